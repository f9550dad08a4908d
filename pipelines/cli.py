"""`morphable`: the one command-line entry point for every stage, the demo and the UI.

The stage commands call `pipelines` functions directly. `demo` and `ui` are the orchestration entry points and
reach up into `assets_defs` (lazily), the only place where a `pipelines` module does so.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from pathlib import Path

from pipelines.settings import SettingsError, describe_keys, load_settings
from model.diffusion.config import PRESETS as _PRESETS


def _settings(args: argparse.Namespace):
    return load_settings(getattr(args, "settings", None))


def cmd_demo_data(args: argparse.Namespace) -> int:
    from pipelines.demo_data import StandinSpec, ensure_demo_data

    s = _settings(args)
    root = Path(args.root) if args.root else s.synthetic_root
    seed = s.synthetic_seed if args.seed is None else args.seed
    spec = StandinSpec.with_counts(args.facescape_subjects, args.thuman_subjects, args.expressions, args.heldout,
                                   args.first_id, args.profile, args.thuman_poses, args.thuman_pose_variants)
    report = ensure_demo_data(root, seed, force=args.force, spec=spec, workers=args.workers)
    verb = f"written in {report.seconds:.1f} s" if report.created else "already complete (use --force to rebuild)"
    print(f"synthetic stand-in at {report.root}: {verb}")
    print(json.dumps(report.counts))
    return 0


def cmd_settings(args: argparse.Namespace) -> int:
    s = _settings(args)
    if args.json:
        print(json.dumps(s.as_dict(), indent=2))
        return 0
    print(f"settings source: {s.source}")
    for key, env, desc in describe_keys():
        print(f"  {key:28s} = {getattr(s, key)}\n      ({env}; {desc})")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from pipelines.catalog import DATASET_NAMES
    from pipelines.ingest import validate_body_models, validate_dataset

    s = _settings(args)
    datasets = DATASET_NAMES if args.dataset == "all" else (args.dataset,)
    subjects = [args.subject] if args.subject else None
    reports = [r for d in datasets for r in validate_dataset(s, d, subjects, decode_images=args.decode_images)]
    body = validate_body_models(s) if args.body_models else None
    if args.json:
        print(json.dumps({"subjects": [r.as_dict() for r in reports], "body_models": body}, indent=2, default=str))
    else:
        for r in reports:
            status = "ok" if r.ok else f"ERROR {r.error}"
            print(f"{r.dataset:9s} {r.subject:6s} files={r.n_files:4d} version={r.data_version}  {status}")
        if body:
            for name, info in body.items():
                print(f"{name:9s} {info}")
    return 0 if all(r.ok for r in reports) else 1


def cmd_track(args: argparse.Namespace) -> int:
    from pipelines.track import track

    outcome = track(_settings(args), args.dataset, args.subject, args.topology)
    rec = outcome.record
    summary = {"dataset": rec.dataset, "subject": rec.subject, "tracker_version": rec.tracker_version,
               "data_version": rec.data_version, "seconds": round(outcome.seconds, 2),
               "metrics": {k: v for k, v in rec.metrics.items() if not k.startswith("_")}}
    if args.json:
        print(json.dumps(summary, indent=2, default=float))
    else:
        print(f"{rec.dataset}/{rec.subject}: {rec.tracker_version}, data version {rec.data_version}, "
              f"{outcome.seconds:.1f} s")
        for item, m in summary["metrics"].items():
            print(f"  {item:14s} " + "  ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                                 for k, v in m.items()))
    return 0


def cmd_views(args: argparse.Namespace) -> int:
    from pipelines.views import views

    out = views(_settings(args), args.dataset, args.subject, args.topology)
    print(f"{args.dataset}/{args.subject}: {out.n_views} views in {out.seconds:.1f} s "
          f"({out.per_view_seconds:.3f} s per view) -> {out.path}")
    if any(out.rejected.values()):
        print(f"  rejected by colour calibration: {out.rejected}")
    return 0


def cmd_fit_image(args: argparse.Namespace) -> int:
    from pipelines.fit_image import fit_image

    out = fit_image(_settings(args), args.image, args.out)
    print(f"mesh: {out.mesh_path}\nparams: {out.params_path}\noverlay: {out.overlay_path}")
    print(f"landmark reprojection error: {out.fit.pixel_error:.2f} px "
          f"({100 * out.fit.relative_error:.2f} % of the image size)")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from pipelines.params import config_from_arguments
    from pipelines.train import TrainConfig, train

    res = train(_settings(args), config_from_arguments(TrainConfig, args), resume=args.resume, force=args.force)
    if res.checkpoint is not None:  # rank 0
        print(f"{res.run_dir}: step {res.step}, last loss {res.losses[-1] if res.losses else float('nan'):.4f}, "
              f"{res.seconds:.1f} s\ncheckpoint: {res.checkpoint}\nTensorBoard: tensorboard --logdir "
              f"{res.run_dir / 'tensorboard'}")
    return 0


def cmd_train_first_stage(args: argparse.Namespace) -> int:
    from pipelines.first_stage import FirstStageConfig, judge_heldout_psnr, train_first_stage
    from pipelines.params import config_from_arguments

    cfg = config_from_arguments(FirstStageConfig, args)
    res = train_first_stage(_settings(args), cfg)
    print(f"checkpoint: {res.checkpoint} ({res.seconds:.0f} s)")
    _passed, table = judge_heldout_psnr(res.psnr_heldout, cfg.datasets)
    for dataset, row in table.items():
        verdict = "meets" if row["passed"] else "below" if row["psnr_db"] is not None else "not judged:"
        print(f"  {dataset}: held-out PSNR {row['psnr_db']} dB, {verdict} its {row['bar_db']} dB bar "
              f"{row.get('note', '')}".rstrip())
    return 0


def cmd_train_reference(args: argparse.Namespace) -> int:
    from pipelines.params import config_from_arguments
    from pipelines.reference import PRETRAINED_DIR, ReferenceConfig, train_reference

    cfg = config_from_arguments(ReferenceConfig, args)
    out = train_reference(_settings(args), cfg, Path(args.out) if args.out else PRETRAINED_DIR)
    recipe = json.loads((out / "recipe.json").read_text())
    print(f"reference model: {out}\n  final loss {recipe['final_loss']:.4f}, timing {recipe['timing']}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from model.diffusion.ddim import DDIMConfig
    from pipelines.generate import generate
    from pipelines.params import config_from_arguments

    out = generate(_settings(args), args.checkpoint, args.image, args.out, mesh=args.mesh,
                   expression=args.expression, trajectory=args.trajectory, trajectory_file=args.trajectory_file,
                   sampler=config_from_arguments(DDIMConfig, args), face_check=args.face_check, log=print)
    print(f"16 views in {out.out_dir / 'views'}, contact sheet {out.out_dir / 'sheet.png'}, "
          f"NeuS2 dataset {out.out_dir / 'neus2' / 'transforms.json'}")
    return 0


def _report_animation(out) -> None:
    n, views = out.views.shape[:2]
    print(f"{n} frames x {views} views in {out.out_dir / 'frames'} ({out.seconds:.0f} s); videos: "
          f"{out.out_dir / 'views'} (one per view), {out.out_dir / 'grid.webp'} (all views)")


def cmd_animate(args: argparse.Namespace) -> int:
    from model.diffusion.ddim import DDIMConfig
    from pipelines.animate import AnimationConfig, animate
    from pipelines.params import config_from_arguments

    out = animate(_settings(args), args.checkpoint, args.image, args.driving, args.out,
                  sampler=config_from_arguments(DDIMConfig, args), config=config_from_arguments(AnimationConfig, args),
                  face_check=args.face_check, log=print)
    _report_animation(out)
    return 0


def cmd_animate_sequence(args: argparse.Namespace) -> int:
    from model.diffusion.ddim import DDIMConfig
    from pipelines.animate import AnimationConfig
    from pipelines.animations import SHOWN, run_animation, scores_table
    from pipelines.params import config_from_arguments
    from pipelines.reports import markdown_table
    from storage.checkpoints import checkpoint_hash
    from storage.hashing import hash_file

    settings = _settings(args)
    digest = checkpoint_hash(args.checkpoint) if Path(args.checkpoint).is_dir() else hash_file(args.checkpoint)
    out = args.out or Path(settings.storage_root) / "animations" / "cli" / args.label / args.sequence
    res = run_animation(settings, args.label, args.sequence, args.checkpoint, digest,
                        config_from_arguments(DDIMConfig, args), config_from_arguments(AnimationConfig, args),
                        log=print, out_dir=out, frames=args.frames)
    print(markdown_table(scores_table(res.summary), ["sampler", *SHOWN]))
    print(f"{res.folder} ({res.seconds:.0f} s): frames.parquet, summary.json, strip.png, "
          f"{args.mode}/grid.webp and per-view videos")
    return 0


def cmd_animate_body(args: argparse.Namespace) -> int:
    from model.diffusion.ddim import DDIMConfig
    from pipelines.animate import AnimationConfig
    from pipelines.animate_body import animate_body
    from pipelines.params import config_from_arguments

    out = animate_body(_settings(args), args.checkpoint, args.subject, args.driving, args.out,
                       sampler=config_from_arguments(DDIMConfig, args),
                       config=config_from_arguments(AnimationConfig, args), log=print, topology=args.topology)
    _report_animation(out)
    return 0


def cmd_pose_sequence(args: argparse.Namespace) -> int:
    from pipelines.body_driving import interpolate_poses, read_pose_file, write_pose_file

    seq = interpolate_poses(read_pose_file(args.start), read_pose_file(args.end), args.frames, fps=args.fps)
    write_pose_file(args.out, seq)
    print(f"{seq.frames} poses from {args.start} to {args.end}: {args.out}")
    return 0


def cmd_driving_sequence(args: argparse.Namespace) -> int:
    from pipelines.driving import endpoint, interpolate, write_driving_file

    settings = _settings(args)
    a, b = endpoint(settings, args.start), endpoint(settings, args.end)
    seq = interpolate(a.expression[0], b.expression[-1], args.frames, a.jaw_pose[0], b.jaw_pose[-1], fps=args.fps)
    write_driving_file(args.out, seq)
    print(f"{seq.frames} frames from {args.start} to {args.end}: {args.out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    from model.diffusion.ddim import DDIMConfig
    from pipelines.evaluate import evaluate_set, format_table
    from pipelines.evaluation_sets import generate_eval_set
    from pipelines.params import config_from_arguments

    settings = _settings(args)
    quiet = (lambda *_: None) if args.json else print
    es = generate_eval_set(settings, args.protocol, args.checkpoint, args.method,
                           config_from_arguments(DDIMConfig, args), image_size=args.image_size, log=quiet,
                           topology=args.topology)
    ev = evaluate_set(settings, es.path, log=quiet)
    row = ev.tables["per_protocol"]
    if args.json:
        doc = {**{k: (None if isinstance(v, float) and v != v else v) for k, v in row.iloc[0].to_dict().items()},
               "tables": {k: str(v) for k, v in ev.paths.items()}, "eval_set": str(es.path),
               "seconds_per_view": ev.seconds_per_view, "missing": ev.missing}
        print(json.dumps(doc, indent=1, default=str))
    else:
        print(format_table(row, ["protocol", "method", "checkpoint_hash", "psnr", "ssim", "lpips", "fid", "pck",
                                 "reid", "masked_psnr", "silhouette_iou", "views"]))
        print(f"tables: {ev.paths['per_view'].parent}")
    return 0


def cmd_import_checkpoint(args: argparse.Namespace) -> int:
    from pipelines.import_checkpoint import import_checkpoint

    out = import_checkpoint(_settings(args), args.file, args.kind, args.preset, args.projection, args.topology,
                            args.name, log=(lambda *_: None) if args.json else print)
    doc = {"checkpoint": str(out.folder), "source_sha256": out.source_sha256, "kind": out.kind, "preset": out.preset,
           "report": out.report, "reused": out.reused, "seconds": round(out.seconds, 1)}
    if args.json:
        print(json.dumps(doc, indent=1))
    else:
        verb = "already imported" if out.reused else f"imported in {out.seconds:.1f} s"
        print(f"{args.file}: {verb} -> {out.folder}\n  {out.kind}, preset {out.preset}; {out.report}")
    return 0


def cmd_inspect_model(args: argparse.Namespace) -> int:
    from model.diffusion.config import PRESETS
    from model.diffusion.network import state_dict_manifest

    manifest = state_dict_manifest(PRESETS[args.preset](args.projection))
    if args.json:
        print(json.dumps(manifest, indent=1))
    else:
        total = sum(int(math.prod(v["shape"])) for v in manifest.values())
        tops: dict[str, int] = {}
        for k in manifest:
            tops[k.split(".")[0]] = tops.get(k.split(".")[0], 0) + 1
        print(f"preset {args.preset}: {len(manifest)} state-dict entries, {total:,} elements")
        for top, n in sorted(tops.items()):
            print(f"  {top:22s} {n:5d} keys")
    return 0


#: what `morphable demo` prints: identities no training saw (FaceScape 122, THuman 2201 of the stand-in)
HELDOUT_TABLES = (
    ("facescape_novel_view", ("masked_psnr", "ssim", "silhouette_iou", "psnr", "reid"),
     "FaceScape, held-out identity, novel views (input: the same expression's frontal view)"),
    ("facescape_novel_expression", ("masked_psnr", "ssim", "silhouette_iou", "iou_target_mesh", "iou_input_mesh"),
     "FaceScape, held-out identity, novel expression 06 + novel views (input: another expression); mesh IoU with "
     "the target / the input expression's mesh"),
    ("thuman_novel_view", ("masked_psnr", "ssim", "silhouette_iou", "iou_target_mesh", "iou_condition_mesh", "pck"),
     "THuman, held-out scan, 16 novel views; IoU with its SMPL-X and (wrong_mesh) with the other body's it was given; "
     "PCK@0.2 of the SMPL-X fitted to the generated silhouettes"),
    ("thuman_novel_pose", ("masked_psnr", "ssim", "silhouette_iou", "iou_target_mesh", "iou_input_mesh", "pck"),
     "THuman, held-out person, novel pose + novel views (input: the same person in another pose); SMPL-X IoU with "
     "the target / the input pose; PCK@0.2 of the fitted SMPL-X"),
)


def cmd_demo(args: argparse.Namespace) -> int:
    from assets_defs.demo import run_demo

    result = run_demo(args.settings or "")
    pol = result.policy
    print(f"\nmain job finished in {result.seconds:.1f} s: {len(pol.runs)} runs in {pol.ticks} policy ticks, "
          f"{len(result.materialized)} assets materialized, {pol.observations} source observations")
    if not pol.runs:
        print("nothing to do: every asset is up to date with its code, its inputs and the experiments file")
    print(f"partitions: subjects {result.subject_partitions}, experiments {result.experiment_partitions}")
    failed_checks = sorted(name for name, passed in result.checks.items() if not passed)
    print(f"asset checks: {len(result.checks) - len(failed_checks)} passed, {len(failed_checks)} failed "
          f"{'(' + ', '.join(failed_checks) + ')' if failed_checks else ''}")
    for run in pol.failed:
        print(f"FAILED run {run.label} (run id {run.run_id}; the UI shows its log)")
    if result.comparison is not None:
        from pipelines.evaluate import format_table

        table = result.comparison
        from pipelines.protocols import PROTOCOLS

        for protocol, metrics, title in HELDOUT_TABLES:
            cols = ["experiment"] + [f"{protocol}/{m}" for m in metrics if f"{protocol}/{m}" in table]
            rows = table[table["dataset"] == PROTOCOLS[protocol].dataset]
            if len(cols) > 1 and len(rows):
                print(f"\n{title} (higher is better):")
                print(format_table(rows, cols))
        print("(every protocol and experiment: the comparison asset, evaluation/comparison)")
    for what, where in (result.pictures or {}).items():
        print(f"{what}: {where}")
    return 0 if not failed_checks and not pol.failed else 1


def cmd_ui(args: argparse.Namespace) -> int:
    from assets_defs.instance import dagster_home, get_instance

    get_instance()  # DAGSTER_HOME prepared, pools sized for this machine
    home = dagster_home()
    cmd = [sys.executable, "-m", "dagster", "dev", "-m", "assets_defs.definitions", "-h", "127.0.0.1",
           "-p", str(args.port)]
    print(f"DAGSTER_HOME={home}\nstarting the Dagster UI on http://127.0.0.1:{args.port}")
    os.execv(sys.executable, cmd)
    return 0


def cmd_pools(args: argparse.Namespace) -> int:
    from assets_defs.instance import get_instance
    from assets_defs.pools import ENV, pool_limits

    instance = get_instance() if args.apply else None  # (get_instance applies them)
    for pool, slots in pool_limits().items():
        print(f"{pool}: {slots} slots   (override: {ENV[pool]})")
    if instance is not None:
        print(f"applied to the instance in {instance.root_directory}")
    else:
        print("(not applied: --apply sets them on the instance of $DAGSTER_HOME; the discovery sensor applies them "
              "on every tick)")
    return 0


def cmd_checkpoints(args: argparse.Namespace) -> int:
    """The checkpoint store, oldest first: what `checkpoint = "<hash>"` in the experiments file can name."""
    from storage.checkpoints import list_checkpoints

    rows = list_checkpoints(_settings(args).storage_root)
    if args.name:
        rows = [r for r in rows if r["name"] == args.name]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        print("no checkpoints in the store yet")
    for r in rows:
        print(f"{r['hash']}  {r['written']}  {r['name']}")
    return 0


def _interpolation_arguments(s: argparse.ArgumentParser, start: str, end: str) -> None:
    """driving-sequence and pose-sequence: two ends, a length, a rate, the file to write."""
    s.add_argument("--from", dest="start", required=True, help=start)
    s.add_argument("--to", dest="end", required=True, help=end)
    s.add_argument("--frames", type=int, default=16)
    s.add_argument("--fps", type=float, default=25.0)
    s.add_argument("--out", required=True, help="the .npz to write")


def build_parser() -> argparse.ArgumentParser:
    from model.diffusion.ddim import DDIMConfig
    from pipelines.animate import AnimationConfig
    from pipelines.animations import ANIMATIONS
    from pipelines.catalog import DATASETS, DATASET_NAMES, topology_names
    from pipelines.first_stage import FirstStageConfig
    from pipelines.import_checkpoint import KINDS as CHECKPOINT_KINDS
    from pipelines.params import add_config_arguments
    from pipelines.protocols import PROTOCOLS
    from pipelines.train import TrainConfig

    PROJECTIONS = sorted({d.projection for d in DATASETS.values()})
    TOPOLOGY_HELP = "; ".join(f"{d.name}: " + ", ".join(t.name + (" (default)" if t.name == d.default_topology else "")
                                                        for t in d.topologies) for d in DATASETS.values())

    p = argparse.ArgumentParser(prog="morphable", description=__doc__.splitlines()[0])
    p.add_argument("--settings", help="settings TOML (default: $MORPHABLE_SETTINGS, ./morphable.toml, embedded)")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("demo-data", help="write the synthetic stand-in in the real dataset formats")
    s.add_argument("--root", help="output folder (default: synthetic_root from the settings)")
    s.add_argument("--seed", type=int, help="generator seed (default: synthetic_seed from the settings)")
    s.add_argument("--force", action="store_true", help="rebuild even if a complete stand-in is there")
    s.add_argument("--facescape-subjects", type=int, default=4, help="FaceScape identities (held-out ones included)")
    s.add_argument("--thuman-subjects", type=int, default=4, help="THuman scans (held-out ones included)")
    s.add_argument("--expressions", type=int, default=3,
                   help="expressions per FaceScape identity (1_neutral, 2_smile, 6_jaw_right, then 3, 4, 5, 7, ...)")
    s.add_argument("--heldout", type=int, default=1,
                   help="of those, identities with the paper's held-out ids (FaceScape 122, 212, 326..; THuman 2201..)")
    s.add_argument("--first-id", type=int, default=1, help="first training id (FaceScape id; THuman uid)")
    s.add_argument("--workers", type=int, help="processes writing subjects (default: one per CPU core)")
    s.add_argument("--thuman-poses", choices=("standing", "varied"), default="standing",
                   help="THuman scans near an A-pose (the demo's) or over a wide range of poses (the body reference's)")
    s.add_argument("--thuman-pose-variants", type=int, default=2,
                   help="other poses of each held-out scan's person (uids +100, +200: the novel-pose ground truth)")
    s.add_argument("--profile", choices=("demo", "real-size"), default="demo",
                   help="sizes: demo (laptop) or real-size (the real files' mesh, image and texture sizes, ~60 "
                        "cameras per expression; use a handful of subjects, docs/benchmarks.md)")
    s.set_defaults(func=cmd_demo_data)

    s = sub.add_parser("settings", help="show the resolved settings and their environment variables")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_settings)

    s = sub.add_parser("validate", help="open raw subjects (and body models) through the readers")
    s.add_argument("--dataset", choices=[*DATASET_NAMES, "all"], default="all")
    s.add_argument("--subject", help="one subject id (default: all)")
    s.add_argument("--decode-images", action="store_true", help="also decode every image (slower)")
    s.add_argument("--body-models", action="store_true", help="also load FLAME / SMPL-X / bilinear models")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_validate)

    s = sub.add_parser("track", help="fit / convert the body-model meshes of one subject into the track store")
    s.add_argument("--dataset", choices=DATASET_NAMES, required=True)
    s.add_argument("--subject", required=True)
    s.add_argument("--topology", choices=topology_names(), help=TOPOLOGY_HELP)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_track)

    s = sub.add_parser("views", help="render / preprocess the training views of one subject into its zarr store "
                                     "(needs its track: run `morphable track` first)")
    s.add_argument("--dataset", choices=DATASET_NAMES, required=True)
    s.add_argument("--subject", required=True)
    s.add_argument("--topology", choices=topology_names(), help="whose tracks condition the views (run `morphable "
                                                                "track` with it first); " + TOPOLOGY_HELP)
    s.set_defaults(func=cmd_views)

    s = sub.add_parser("fit-image", help="single-image FLAME fit (dlib 68 landmarks) for inference")
    s.add_argument("--image", required=True)
    s.add_argument("--out", required=True, help="output folder (mesh.obj, params.json, landmarks.png)")
    s.set_defaults(func=cmd_fit_image)

    s = sub.add_parser("train", help="train the diffusion model on the view stores (atomic checkpoints, --resume)")
    add_config_arguments(s, TrainConfig)
    s.add_argument("--resume", action="store_true", help="continue the run from its last checkpoint, exactly")
    s.add_argument("--force", action="store_true", help="with --resume: continue although the configuration "
                                                        "changed (no longer bitwise equal to an uninterrupted run)")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("train-first-stage", help="train the tiny preset's autoencoder on the view stores")
    add_config_arguments(s, FirstStageConfig)
    s.set_defaults(func=cmd_train_first_stage)

    from pipelines.reference import ReferenceConfig

    s = sub.add_parser("train-reference", help="build the pretrained tiny reference model from nothing (own stand-in "
                                               "under <data_root>/reference, tracking, views, first stage, "
                                               "diffusion); run it again to continue an interrupted build")
    add_config_arguments(s, ReferenceConfig)
    s.add_argument("--out", help="export folder (default: the repository's pretrained/)")
    s.set_defaults(func=cmd_train_reference)

    s = sub.add_parser("generate", help="one image + a target mesh or expression image -> 16 views + NeuS2 data")
    s.add_argument("--checkpoint", required=True, help="a checkpoint folder, or a released .ckpt (imported once)")
    s.add_argument("--image", required=True)
    g = s.add_mutually_exclusive_group()
    g.add_argument("--mesh", help="FLAME mesh (.obj, canonical frame, metres)")
    g.add_argument("--expression", help="image whose expression to transfer (single-image FLAME fit); neither "
                                        "option: novel views of the input's own expression (FLAME fitted to --image)")
    s.add_argument("--out", required=True, help="output folder: new, empty, or an earlier output (replaced)")
    s.add_argument("--trajectory", choices=["virtual", "real"], default="virtual")
    s.add_argument("--trajectory-file", help="--trajectory real: facescape_test_traj.pkl, or the same as .json/.npz")
    s.add_argument("--no-face-check", dest="face_check", action="store_false",
                   help="generate even if no face is detected in --image")
    add_config_arguments(s, DDIMConfig)
    s.set_defaults(func=cmd_generate)

    s = sub.add_parser("animate", help="one image + a driving sequence of expressions -> 16 views per frame, "
                                       "videos per view and of all views (docs/evaluation.md)")
    s.add_argument("--checkpoint", required=True, help="a checkpoint folder, or a released .ckpt (imported once)")
    s.add_argument("--image", required=True, help="the face to animate (its FLAME shape is fitted)")
    s.add_argument("--driving", required=True, help="a folder of frames (each fitted, then smoothed), or a FLAME "
                                                    "parameter file (.npz/.json: 'expression' (T, E), optional "
                                                    "'jaw_pose' (T, 3), 'fps'; `morphable driving-sequence` makes one)")
    s.add_argument("--out", required=True, help="output folder: new, empty, or an earlier output (replaced)")
    s.add_argument("--no-face-check", dest="face_check", action="store_false",
                   help="animate even if no face is detected in --image")
    add_config_arguments(s, AnimationConfig)
    add_config_arguments(s, DDIMConfig)
    s.set_defaults(func=cmd_animate)

    s = sub.add_parser("animate-sequence", help="a declared sequence (pipelines/animations.py): the stand-in's "
                                                "ground truth, the sampler and independent sampling, scored")
    s.add_argument("--checkpoint", required=True, help="a checkpoint folder, or a released .ckpt (imported once)")
    s.add_argument("--sequence", required=True, choices=sorted(ANIMATIONS))
    s.add_argument("--label", default="cli", help="the experiment name it is filed under (default: cli)")
    s.add_argument("--frames", type=int, help="the same sweep in this many frames (default: as declared)")
    s.add_argument("--out", help="output folder (default: <storage>/animations/cli/<label>/<sequence>, apart from "
                                 "the graph's)")
    add_config_arguments(s, AnimationConfig)
    add_config_arguments(s, DDIMConfig)
    s.set_defaults(func=cmd_animate_sequence)

    s = sub.add_parser("animate-body", help="a THuman subject + a SMPL-X pose sequence -> 16 views per frame, "
                                            "videos per view and of all views (docs/evaluation.md)")
    s.add_argument("--checkpoint", required=True, help="a THuman checkpoint folder, or a released .ckpt")
    s.add_argument("--subject", required=True, help="a tracked THuman uid with a view store (its person and cameras)")
    s.add_argument("--driving", required=True, help="a pose file (.npz/.json: 'body_pose' (T, 63), optional "
                                                    "'global_orient' (T, 3), 'fps'; `morphable pose-sequence` makes "
                                                    "one) or a THuman smplx_param.pkl (one pose)")
    s.add_argument("--topology", default="smplx", help="the THuman topology whose track and views it reads")
    s.add_argument("--out", required=True, help="output folder: new, empty, or an earlier output (replaced)")
    add_config_arguments(s, AnimationConfig)
    add_config_arguments(s, DDIMConfig)
    s.set_defaults(func=cmd_animate_body)

    s = sub.add_parser("pose-sequence", help="an interpolation between two SMPL-X poses (pose files or THuman "
                                             "smplx_param.pkl fits) as a driving file for `animate-body`")
    _interpolation_arguments(s, "a pose file (its last frame) or a fit", "a pose file (its first frame) or a fit")
    s.set_defaults(func=cmd_pose_sequence)

    s = sub.add_parser("driving-sequence", help="an interpolation between two expressions (images, fitted, or "
                                                "parameter files) as a driving file for `animate`")
    _interpolation_arguments(s, "an image or a parameter file (its first frame)",
                             "an image or a parameter file (its last frame)")
    s.set_defaults(func=cmd_driving_sequence)

    s = sub.add_parser("evaluate", help="generate a protocol's evaluation set and compute its metric tables")
    s.add_argument("--protocol", required=True, choices=sorted(PROTOCOLS))
    s.add_argument("--checkpoint", help="checkpoint folder or released .ckpt (required for --method model)")
    s.add_argument("--method", choices=["model", "copy_input", "mean_train"], default="model")
    s.add_argument("--image-size", type=int, help="baselines: image size (default 64)")
    s.add_argument("--topology", choices=topology_names(), help="whose view stores and meshes are read (default: a "
                                                                "model's own, a baseline's the dataset's default); "
                                                                + TOPOLOGY_HELP)
    s.add_argument("--json", action="store_true")
    add_config_arguments(s, DDIMConfig)
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("import-checkpoint", help="a released .ckpt (Morphable Diffusion or SyncDreamer) into the "
                                                 "checkpoint store (read without running any code from the file)")
    s.add_argument("file", help="the .ckpt / .pt file (PyTorch Lightning or a bare state dict)")
    s.add_argument("--kind", choices=CHECKPOINT_KINDS, default="auto",
                   help="auto (default): recognised from the keys (a Morphable Diffusion file holds the 3DMM branch, "
                        "spatial_volume.xyzc_net.*); morphable: every key must match (generation, fine-tuning); "
                        "syncdreamer: the release's drop filter (a training init)")
    s.add_argument("--preset", choices=list(_PRESETS), help="default: recognised from the weights' keys and shapes")
    s.add_argument("--projection", choices=PROJECTIONS,
                   help="default: the cameras of --topology's dataset (smplx: orthographic), else perspective")
    s.add_argument("--topology", choices=topology_names(graph_only=True), help="the 3DMM the model was trained with")
    s.add_argument("--name", help="checkpoint name under checkpoints/ (default: <kind>-<preset>-<topology>)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_import_checkpoint)

    s = sub.add_parser("inspect-model", help="the network's state-dict keys, shapes and dtypes (meta device, "
                                             "no weights allocated)")
    s.add_argument("--preset", choices=list(_PRESETS), default="paper")
    s.add_argument("--projection", choices=PROJECTIONS, default="perspective")
    s.add_argument("--json", action="store_true", help="print {key: {shape, dtype}} (compare with the manifests)")
    s.set_defaults(func=cmd_inspect_model)

    s = sub.add_parser("demo", help="the main job: materialize the whole asset graph in the embedded instance")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("ui", help="start the Dagster UI on 127.0.0.1")
    s.add_argument("--port", type=int, default=3000)
    s.set_defaults(func=cmd_ui)

    s = sub.add_parser("checkpoints", help="list the checkpoint store (hash, written, run name): an earlier one is "
                                           "re-evaluated as an experiment with checkpoint = \"<hash>\"")
    s.add_argument("--name", help="only this run name (an experiment's)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_checkpoints)

    s = sub.add_parser("pools", help="the pool limits for this machine (cpu: cores, gpu_heavy: GPUs; "
                                     "MORPHABLE_CPU_SLOTS / MORPHABLE_GPU_SLOTS override)")
    s.add_argument("--apply", action="store_true", help="set them on the instance of $DAGSTER_HOME")
    s.set_defaults(func=cmd_pools)
    return p


def user_error_message(exc: BaseException) -> str | None:
    """One readable line for an error a user can cause (a bad file, setting or argument), or None for a bug.

    The project's own errors already read "<file>: <problem>. Fix: <how>"; the known library errors are mapped to
    the same shape with the file they name."""
    import json
    import pickle
    import zipfile

    from storage.errors import DataError

    if isinstance(exc, (DataError, SettingsError)):
        return str(exc)
    fname = getattr(exc, "filename", None)
    where = f"{fname}: " if fname else ""
    try:
        from PIL import UnidentifiedImageError
    except ImportError:  # pragma: no cover - PIL is a dependency
        UnidentifiedImageError = ()  # noqa: N806
    if UnidentifiedImageError and isinstance(exc, UnidentifiedImageError):
        return f"{exc} (not an image PIL can read). Fix: give a PNG or JPEG file"
    if isinstance(exc, FileNotFoundError):
        return f"{where}not found. Fix: check the path"
    if isinstance(exc, IsADirectoryError):
        return f"{where}is a folder, a file was expected. Fix: check the path"
    if isinstance(exc, PermissionError):
        return f"{where}permission denied. Fix: check the file's permissions"
    if isinstance(exc, json.JSONDecodeError):
        return f"invalid JSON ({exc.msg} at line {exc.lineno}). Fix: check the file named above"
    if isinstance(exc, (zipfile.BadZipFile, pickle.UnpicklingError)):
        return f"{type(exc).__name__}: {exc}. Fix: the file is damaged or of another kind; use the original"
    if type(exc).__name__ == "SafetensorError":
        return f"cannot read a .safetensors file ({exc}). Fix: re-create the checkpoint"
    if isinstance(exc, ValueError):  # argument and content errors raised with a readable message
        return str(exc)
    if isinstance(exc, OSError):
        return f"{where}{exc.strerror or exc}"
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("morphable: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one line for the user; --debug keeps the traceback
        if args.debug:
            raise
        message = user_error_message(exc)
        if message is None:
            print(f"morphable: internal error: {type(exc).__name__}: {exc} (this is a bug; run the command again "
                  "with --debug for the traceback and report it)", file=sys.stderr)
            return 1
        print(f"morphable: error: {' '.join(message.split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
