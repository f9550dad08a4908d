"""Animation sequences as data, and the graph's `animation` stage: an experiment's model driven through one.

A sequence (`AnimationSpec`, declared in `ANIMATIONS` like the evaluation protocols) names a stand-in FaceScape
identity, the two expressions its sweep runs between and its length. What the stage reads and writes:

- input: the identity's most frontal calibrated view of the first expression (its view store: what a user would
  photograph), and the store's 16 upright views of that expression spread over the azimuth range (the rig's
  cameras: the views the model was trained to produce);
- driving: the sweep's FLAME expressions (`standin_sweep.sweep_sequence`), on the identity the input image's
  single-image fit gives, as `morphable animate` does;
- ground truth: the identity rendered through the same sweep from the same cameras (`standin_sweep`);
- the experiment's sampler (`Experiment.animation`, default shared noise) and, as the baseline row, independent
  per-frame sampling, on the same frames; the ground truth's own scores beside them show each metric's floor;
- out: `<storage>/animations/<dataset>/<topology>/<experiment>/<sequence>/`: `input.png`, one folder per sampler
  (`pipelines.animate`'s frames, videos, meshes), `truth/grid.webp`, `frames.parquet` (every frame's scores per
  sampler), `summary.json` and `strip.png` (the front view over time: truth, the sampler, independent).

Scores: `animate.temporal_scores` (warping error, flicker) and `animation_scores` (expression NME, identity, masked
PSNR / SSIM / silhouette IoU against the truth, per frame).
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from storage.hashing import hash_json

ANIMATION_STAGE_VERSION = "animation-1"
BASELINE_MODE = "independent"
TRUTH = "ground_truth"


@dataclass(frozen=True)
class AnimationSpec:
    name: str
    subject: str  # a FaceScape subject of the synthetic stand-in
    start: str  # FaceScape expression folders (pipelines.demo_data.FACESCAPE_EXPRESSION_TABLE)
    end: str
    frames: int = 16
    fps: float = 8.0
    dataset: str = "facescape"
    topology: str = "flame"  # the line whose checkpoints it animates (FLAME meshes drive them)
    views: int = 16
    description: str = ""

    def digest(self) -> str:
        return hash_json(asdict(self), 12)


ANIMATIONS: dict[str, AnimationSpec] = {a.name: a for a in (
    AnimationSpec("heldout_jaw_sweep", "122", "1_neutral", "6_jaw_right", frames=16,
                  description="held-out identity 122 from neutral to jaw right over 16 frames (8 fps)"),
    AnimationSpec("heldout_smile", "122", "1_neutral", "2_smile", frames=8,
                  description="held-out identity 122 from neutral to a smile over 8 frames (8 fps)"),
)}


def get_animation(name: str) -> AnimationSpec:
    if name not in ANIMATIONS:
        raise ValueError(f"unknown animation sequence {name!r}; choose one of {sorted(ANIMATIONS)}")
    return ANIMATIONS[name]


def line_animations(dataset: str, topology: str) -> list[str]:
    """The sequences that animate one line's checkpoints."""
    return [n for n, a in ANIMATIONS.items() if (a.dataset, a.topology) == (dataset, topology)]


@dataclass(frozen=True)
class AnimationInputs:
    image: np.ndarray  # (S, S, 3) uint8: the input view, at the store's size
    ks: np.ndarray  # (N, 3, 3) for S px
    rts: np.ndarray  # (N, 3, 4) model frame
    views: list[int]  # the cameras' indices in the store
    input_view: int
    store_hash: str


def animation_inputs(settings, spec: AnimationSpec) -> AnimationInputs:
    """The input view and the cameras of the sequence's first expression (see the module docstring)."""
    from pipelines import catalog
    from pipelines.protocols import _frontal_view, _spread
    from pipelines.training_data import _upright
    from storage.errors import MissingFileError
    from storage.views import ViewStore, store_path

    from storage.errors import InvalidContentError

    root, synthetic = Path(settings.facescape_root).resolve(), Path(settings.synthetic_root).resolve()
    if not root.is_relative_to(synthetic):  # the truth is the stand-in's: never score a real person against it
        raise InvalidContentError(root, f"animation sequences are the synthetic stand-in's, but this facescape_root "
                                        f"(settings: {settings.source}) lies outside synthetic_root {synthetic}",
                                  "animate real faces with `morphable animate --image ... --driving ...` (no "
                                  "ground truth), or point facescape_root at the stand-in")
    topology = catalog.dataset(spec.dataset).default_topology  # the stores of every topology share images, cameras
    path = store_path(settings.storage_root, spec.dataset, topology, spec.subject)
    if not (path / "manifest.json").is_file():
        raise MissingFileError(path, f"no view store of {spec.dataset} subject {spec.subject}",
                               f"materialize {spec.dataset}/{topology}/views [{spec.subject}] first")
    st = ViewStore.open(path)
    items = st.views_of(spec.start)
    if not len(items):
        raise MissingFileError(path, f"subject {spec.subject} has no views of {spec.start}",
                               "choose a sequence whose first expression the stand-in holds")
    inp = _frontal_view(st, items)
    if inp is None:
        raise MissingFileError(path, f"{spec.subject}/{spec.start} has no upright view for the input",
                               "use a stand-in whose rig has upright cameras")
    upright = items[_upright(st.RT[items], 90.0) & (np.abs(st.angles[items, 0]) < 90.0) & (items != inp)]
    views = _spread(upright, st.angles[:, 0], spec.views)
    views = views[np.argsort(st.angles[views, 0], kind="stable")]
    if len(views) < spec.views:
        raise MissingFileError(path, f"{spec.subject}/{spec.start} has {len(views)} usable views besides the input; "
                               f"the model generates {spec.views}", "use a stand-in with more cameras")
    return AnimationInputs(st.rgb_many(np.array([inp]))[0], st.K[views][:, :3, :3].astype(np.float64),
                           st.RT[views].astype(np.float64), [int(v) for v in views], int(inp),
                           st.manifest["content_hash"])


def inputs_digest(spec: AnimationSpec, checkpoint_hash: str, sampler: dict, animation: dict, store_hash: str) -> str:
    """The stage's data version: what it reads and how it samples."""
    return hash_json({"stage": ANIMATION_STAGE_VERSION, "spec": asdict(spec), "checkpoint": checkpoint_hash,
                      "sampler": sampler, "animation": animation, "store": store_hash}, 16)


@dataclass
class AnimationResult:
    folder: Path
    summary: dict[str, dict[str, float]]  # sampler (and "ground_truth") -> its scores
    seconds: float
    version: str


def animation_folder(settings, experiment: str, sequence: str) -> Path:
    spec = get_animation(sequence)
    return Path(settings.storage_root) / "animations" / spec.dataset / spec.topology / experiment / sequence


def run_animation(settings, experiment: str, sequence: str, checkpoint: str | Path, checkpoint_hash: str,
                  sampler=None, config=None, log=print, out_dir: str | Path | None = None,
                  frames: int | None = None) -> AnimationResult:
    """Animate one experiment's checkpoint through one sequence with its sampler and the independent baseline,
    render the ground truth and score all three (see the module docstring); into `out_dir` (default:
    `animation_folder`), which appears complete or not at all. `frames`: the sweep in that many frames instead
    (a quicker look from the CLI; the graph runs sequences as declared)."""
    import pandas as pd
    from PIL import Image

    from model.diffusion.ddim import DDIMConfig
    from pipelines.animate import AnimationConfig, animate, temporal_scores
    from pipelines.animation_scores import frame_scores, summary
    from pipelines.evaluation_sets import _resize
    from pipelines.standin_sweep import SweepRenderer, sweep_sequence
    from storage.atomic import output_folder
    from storage.video import grid, write_animated

    spec = get_animation(sequence)
    if frames is not None:
        spec = dataclasses.replace(spec, frames=int(frames))
    sampler = sampler or DDIMConfig()
    config = config or AnimationConfig()
    t0 = time.perf_counter()
    inputs = animation_inputs(settings, spec)
    version = inputs_digest(spec, checkpoint_hash, dataclasses.asdict(sampler), dataclasses.asdict(config),
                            inputs.store_hash)
    seq = sweep_sequence(spec.start, spec.end, spec.frames, spec.fps)
    folder = Path(out_dir) if out_dir else animation_folder(settings, experiment, sequence)
    modes = [config] + ([AnimationConfig(mode=BASELINE_MODE, smoothing=config.smoothing)]
                        if config.mode != BASELINE_MODE else [])
    with output_folder(folder) as tmp:
        Image.fromarray(inputs.image).save(tmp / "input.png")
        log(f"animation {sequence}: ground truth of subject {spec.subject}, {spec.frames} frames x {spec.views} views")
        truth = SweepRenderer(settings.synthetic_root, spec.subject).sweep(seq, inputs.ks, inputs.rts, log=log)
        outcomes = {}
        for mode in modes:
            log(f"animation {sequence}: sampling with {mode.mode} ({len(outcomes) + 1}/{len(modes)})")
            outcomes[mode.mode] = animate(settings, checkpoint, tmp / "input.png", seq, tmp / mode.mode, sampler,
                                          mode, face_check=False, log=log,
                                          cameras=(inputs.ks, inputs.rts, inputs.image.shape[0]))
            _record_input_path(tmp / mode.mode / "animation.json", folder / "input.png")
        first = next(iter(outcomes.values()))
        size = first.views.shape[2]
        gt = _resize(truth.views.reshape(-1, *truth.views.shape[2:]), size).reshape(first.views.shape)
        gt_mask = _resize(truth.masks.reshape(-1, *truth.masks.shape[2:]).astype(np.uint8), size,
                          nearest=True).reshape(first.views.shape[:4]) > 0
        (tmp / "truth").mkdir()
        write_animated(tmp / "truth" / "grid.webp", grid(gt), spec.fps)
        faces = np.load(tmp / modes[0].mode / "meshes.npz")["faces"]
        tables, rows = [], {}
        for name, out in [*outcomes.items(), (TRUTH, None)]:
            views = gt if out is None else out.views
            log(f"animation {sequence}: scoring {name}")
            per_frame = frame_scores(views, first.landmarks, first.ks, first.rts, inputs.image,
                                     None if out is None else gt, None if out is None else gt_mask)
            # (the truth too along the driving meshes: what a perfect rendering of the person scores along them)
            temporal = temporal_scores(views, first.meshes, faces, first.ks, first.rts)
            rows[name] = summary(per_frame, temporal)
            tables.append(per_frame.assign(sampler=name))
        pd.concat(tables, ignore_index=True).to_parquet(tmp / "frames.parquet")
        seconds = time.perf_counter() - t0
        (tmp / "summary.json").write_text(json.dumps({
            "experiment": experiment, "sequence": asdict(spec), "checkpoint_hash": checkpoint_hash,
            "sampler": dataclasses.asdict(sampler), "animation": dataclasses.asdict(config),
            "input_view": inputs.input_view, "views": inputs.views, "version": version,
            "seconds": round(seconds, 1), "scores": rows}, indent=1, default=float))
        Image.fromarray(front_strip(gt, {m: o.views for m, o in outcomes.items()}, first.rts)).save(tmp / "strip.png")
    return AnimationResult(folder, rows, seconds, version)


def _record_input_path(path: Path, final: Path) -> None:
    """An animation.json written inside the stage's temporary folder names its input where it will be."""
    doc = json.loads(path.read_text())
    doc["image"] = str(final)
    path.write_text(json.dumps(doc, indent=1))


def front_strip(truth: np.ndarray, sampled: dict[str, np.ndarray], rts: np.ndarray, frames: int = 8,
                min_tile: int = 96) -> np.ndarray:
    """A thumbnail strip of the most frontal view over time (at most `frames` frames, evenly spaced): the truth
    in the first row, then one row per sampler; tiles enlarged to `min_tile` px (nearest: the pixels as they are)."""
    from PIL import Image

    from model.frames import camera_angles_model
    from storage.thumbnails import contact_sheet

    azimuth, _ = camera_angles_model(rts)
    front = int(np.argmin(np.abs(azimuth)))
    pick = np.unique(np.linspace(0, truth.shape[0] - 1, min(frames, truth.shape[0])).round().astype(int))
    rows = [truth, *sampled.values()]
    tile = max(min_tile, truth.shape[2])
    tiles = [np.asarray(Image.fromarray(r[t, front]).resize((tile, tile), Image.NEAREST)) for r in rows for t in pick]
    return contact_sheet(tiles, tile=tile, columns=len(pick))


#: the scores the comparison and the asset's table show, in this order
SHOWN = ("warping_error", "flicker", "masked_psnr", "ssim", "silhouette_iou", "expression_nme", "identity_distance",
         "identity_match", "face_found")


def scores_table(summary: dict[str, dict[str, float]]):
    """One row per sampler (the experiment's, the independent baseline, the ground truth's floor)."""
    import pandas as pd

    rows = [{"sampler": name, **{k: row.get(k, float("nan")) for k in SHOWN}} for name, row in summary.items()]
    return pd.DataFrame(rows)


def animation_metadata(result: AnimationResult, config, sampler) -> dict:
    """What the animation asset shows: where it is, the strip, the grid video, the scores per sampler."""
    from PIL import Image

    from pipelines.metadata import JsonValue, Markdown, PathValue
    from pipelines.reports import markdown_table
    from storage.thumbnails import markdown_image

    strip = np.asarray(Image.open(result.folder / "strip.png").convert("RGB"))
    mode = config.mode
    ours, base = result.summary[mode], result.summary.get(BASELINE_MODE)
    meta = {"dagster/uri": str(result.folder), "video": PathValue(str(result.folder / mode / "grid.webp")),
            "views_videos": PathValue(str(result.folder / mode / "views")),
            "sampler": mode, "ddim": JsonValue(dataclasses.asdict(sampler)), "seconds": round(result.seconds, 1),
            "warping_error": ours["warping_error"], "masked_psnr": ours.get("masked_psnr", float("nan")),
            "expression_nme": ours["expression_nme"],
            "strip": Markdown(markdown_image(strip, "front view over time: ground truth (top), " + ", ".join(
                [m for m in result.summary if m != TRUTH]) + " (bottom)")),
            "scores": Markdown(markdown_table(scores_table(result.summary), ["sampler", *SHOWN]))}
    if base is not None and ours["warping_error"] > 0:
        meta["warping_error_ratio_vs_independent"] = round(base["warping_error"] / ours["warping_error"], 2)
    return meta


def run_animation_task(settings, config: dict, log) -> tuple[dict, str]:
    """The worker's `animation` task: config {experiment, sequence, checkpoint, checkpoint_hash, sampler,
    animation}."""
    from model.diffusion.ddim import DDIMConfig
    from pipelines.animate import AnimationConfig

    sampler, anim = DDIMConfig(**config.get("sampler", {})), AnimationConfig(**config.get("animation", {}))
    result = run_animation(settings, config["experiment"], config["sequence"], config["checkpoint"],
                           config["checkpoint_hash"], sampler, anim, log)
    return animation_metadata(result, anim, sampler), result.version


def settings_digest(sequence: dict, sampler: dict, animation: dict) -> str:
    """What an animation ran with, beside its checkpoint: the sequence, the DDIM sampler and the animation sampler
    (plain dicts, as summary.json records them). Not part of the experiment's digest (that versions its checkpoint
    and evaluations), so the animation asset compares it itself (assets_defs/animation.py)."""
    return hash_json({"sequence": sequence, "sampler": sampler, "animation": animation}, 16)


def experiment_settings_digest(experiment, sequence: str) -> str:
    """`settings_digest` of what an experiment's definition asks for now."""
    return settings_digest(asdict(get_animation(sequence)), dataclasses.asdict(experiment.sampler),
                           dataclasses.asdict(experiment.animation))


def animation_record(experiment: str, sequence: str, checkpoint, folder: str | Path):
    """The lineage record of an animation partition, from the summary its stage wrote (NaN scores as None)."""
    from pipelines.records import AnimationRecord
    from storage.jsonfile import read_json

    doc = read_json(Path(folder) / "summary.json", "an animation summary", "materialize the animation again")
    rows = {name: {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in row.items()}
            for name, row in doc["scores"].items()}
    spec = get_animation(sequence)
    return AnimationRecord(experiment=experiment, sequence=sequence, dataset=spec.dataset, topology=spec.topology,
                           kind=checkpoint.kind, folder=str(folder), checkpoint_hash=checkpoint.checkpoint_hash,
                           rows=rows, settings=settings_digest(doc["sequence"], doc["sampler"], doc["animation"]))


def animation_config(settings, experiment, sequence: str, checkpoint) -> dict:
    """The worker's config for one (experiment, sequence) partition; a baseline has no model to animate."""
    if checkpoint.kind == "baseline" or not checkpoint.folder:
        raise ValueError(f"experiment {experiment.name!r} is a baseline ({checkpoint.method}): it has no model to "
                         "animate; independent per-frame sampling is every animation's baseline row")
    get_animation(sequence)
    return {"experiment": experiment.name, "sequence": sequence, "checkpoint": checkpoint.folder,
            "checkpoint_hash": checkpoint.checkpoint_hash, "sampler": dataclasses.asdict(experiment.sampler),
            "animation": dataclasses.asdict(experiment.animation)}


def comparison_rows(records) -> list[dict]:
    """Every animation record's rows, labelled (experiment, sequence, sampler): the comparison's animation table."""
    return [{"dataset": r.dataset, "topology": r.topology, "experiment": r.experiment, "kind": r.kind,
             "checkpoint_hash": r.checkpoint_hash, "sequence": r.sequence, "sampler": name,
             **{k: (float("nan") if row.get(k) is None else row.get(k)) for k in SHOWN}}
            for r in records for name, row in r.rows.items()]
