"""Every stage at the real datasets' sizes: the stand-in's `real-size` profile (`morphable demo-data --profile
real-size`) through the same code paths as the demo, one stage per child process so each reports its own peak RSS.

Stages: stand-in generation; FaceScape tracking (FLAME fit to 26,317-vertex TU meshes, per expression); THuman
tracking with the SMPL-X refinement (per scan, ~330k-face scan); FaceScape views (per view: undistort, ray-cast
silhouette, crop, calibration, store); THuman views (per scan: 32 renders of the scan with its 2048² texture);
view-store bytes per subject; training-loader samples/s with 360 FaceScape stores open (the one real-size store
linked under 360 subject ids); evaluation per view (the shipped reference model, DDIM 10, held-out identity).
The in-run baselines are the demo profile's figures for the same stages (`--baseline-profile demo`, on by default).
Prints JSON; docs/benchmarks.md records the figures and the capacity table derived from them.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SPEC = {"facescape": 2, "thuman": 1, "expressions": 1, "heldout": 1}  # one training + the held-out 122; scan 2201


def _settings(root: Path, data: Path):
    from pipelines.settings import load_settings

    env = {k: v for k, v in os.environ.items() if k != "MORPHABLE_SETTINGS"}
    env.update(MORPHABLE_SYNTHETIC_ROOT=str(root), MORPHABLE_DATA_ROOT=str(data))
    return load_settings(None, env=env)


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def stage(name: str, root: Path, data: Path, profile: str) -> dict:
    """One stage, in this process: {seconds, units, ...}."""
    from pipelines.demo_data import StandinSpec, ensure_demo_data

    spec = StandinSpec.with_counts(SPEC["facescape"], SPEC["thuman"], SPEC["expressions"], SPEC["heldout"],
                                   profile=profile)
    s = _settings(root, data)
    t0 = time.perf_counter()
    if name == "standin":
        report = ensure_demo_data(root, 0, spec=spec, workers=1)
        return {"seconds": report.seconds, "counts": report.counts, "bytes": _du(root),
                "seconds_per_facescape_image_incl_scans": report.seconds / max(report.counts["facescape_images"], 1)}
    if name == "track_facescape":
        from pipelines.track import track

        out = {}
        for subject in spec.facescape_subjects:
            t1 = time.perf_counter()
            track(s, "facescape", subject)
            out[subject] = time.perf_counter() - t1
        n = len(spec.facescape_subjects) * spec.expressions
        return {"seconds": time.perf_counter() - t0, "per_expression": (time.perf_counter() - t0) / n}
    if name == "track_thuman":
        from pipelines.track import track

        for uid in spec.thuman_uids:
            track(s, "thuman", uid, "smplx_refined")
            track(s, "thuman", uid, "smplx")  # (the default topology, which the views read)
        return {"seconds": time.perf_counter() - t0, "per_scan_both_fits": (time.perf_counter() - t0) / len(spec.thuman_uids)}
    if name in ("views_facescape", "views_thuman"):
        from pipelines.views import views

        dataset = name.split("_")[1]
        subjects = spec.facescape_subjects if dataset == "facescape" else spec.thuman_uids
        outs = [views(s, dataset, subject) for subject in subjects]
        n_views = sum(o.n_views for o in outs)
        raw = sum(o.seconds / o.per_view_seconds for o in outs if o.per_view_seconds)  # views read, kept or not
        return {"seconds": time.perf_counter() - t0, "views": n_views, "raw_views": round(raw),
                "per_view": sum(o.seconds for o in outs) / max(raw, 1),
                "per_subject": (time.perf_counter() - t0) / len(subjects),
                "store_bytes_per_subject": sum(_du(Path(o.path)) for o in outs) / len(outs)}
    if name == "loader":
        from pipelines.training_data import SplitConfig, torch_dataset

        from storage.views import store_path, topology_folder

        store = store_path(s.storage_root, "facescape", "flame", spec.facescape_subjects[0])
        linked = Path(str(s.storage_root) + "-many")
        topology_folder(linked, "facescape", "flame").mkdir(parents=True, exist_ok=True)
        for sid in range(1000, 1360):  # 360 training ids, every one the same real-size store
            target = store_path(linked, "facescape", "flame", str(sid))
            if not target.exists():
                os.symlink(store, target)
        t1 = time.perf_counter()
        ds = torch_dataset(linked, "facescape", SplitConfig(shuffled_expression=False))  # (one expression each)
        opened = time.perf_counter() - t1
        import numpy as np

        rng = np.random.default_rng(0)
        t1 = time.perf_counter()
        n = 64
        for i in rng.integers(0, len(ds), n):
            ds[int(i)]
        return {"stores": 360, "open_seconds": opened, "samples_per_second": n / (time.perf_counter() - t1),
                "samples": len(ds)}
    if name == "evaluation":
        from model.diffusion.ddim import DDIMConfig
        from pipelines.evaluation_sets import generate_eval_set

        res = generate_eval_set(s, "facescape_novel_view", REPO / "pretrained" / "tiny-facescape-reference",
                                "model", DDIMConfig(steps=10), log=lambda *_: None)
        return {"seconds": res.seconds, "views": res.views, "per_view": res.seconds / max(res.views, 1)}
    raise SystemExit(f"unknown stage {name!r}")


STAGES = ("standin", "track_facescape", "track_thuman", "views_facescape", "views_thuman", "loader", "evaluation")


def run_profile(profile: str, folder: Path) -> dict:
    """Every stage in its own single-threaded child process (figures per unit on one core, as the per-subject worker
    pools run them; the capacity table scales them by cores)."""
    from pipelines.parallel import THREAD_VARIABLES

    env = {**os.environ, **{k: "1" for k in THREAD_VARIABLES}}
    out = {}
    for name in STAGES:
        proc = subprocess.run([sys.executable, __file__, "--stage", name, "--folder", str(folder), "--profile", profile],
                              capture_output=True, text=True, cwd=REPO, env=env)
        if proc.returncode:
            out[name] = {"error": (proc.stdout + proc.stderr).strip()[-1500:]}
            break
        out[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"[{profile}] {name}: {out[name]}", file=sys.stderr, flush=True)
    return out


FULL = {"facescape_subjects": 359, "facescape_expressions": 20, "thuman_scans": 2445}
MACHINES = {"this machine (2 cores)": 2, "one 32-core machine": 32, "Kubernetes, 16 pods x 8 cores": 128}


def capacity(measured: dict) -> dict:
    """Projected wall time and bytes of preprocessing all of FaceScape and THuman 2.1 from the per-unit, one-core
    figures: subjects are independent partitions, so throughput scales with cores (one single-threaded worker per
    core, the way the stand-in and reference pools and the Kubernetes executor's per-partition pods run them)."""
    fs_expr = FULL["facescape_subjects"] * FULL["facescape_expressions"]
    views = measured["views_facescape"]
    raw_per_expr = views["raw_views"] / (SPEC["facescape"] * SPEC["expressions"])
    core_seconds = {
        "FaceScape tracking (FLAME fit)": measured["track_facescape"]["per_expression"] * fs_expr,
        "FaceScape views": views["per_view"] * raw_per_expr * fs_expr,
        "THuman tracking (fit + refinement)": measured["track_thuman"]["per_scan_both_fits"] * FULL["thuman_scans"],
        "THuman views": measured["views_thuman"]["per_subject"] * FULL["thuman_scans"],
    }
    total = sum(core_seconds.values())
    store_bytes = (views["store_bytes_per_subject"] / SPEC["expressions"] * FULL["facescape_expressions"]
                   * FULL["facescape_subjects"] + measured["views_thuman"]["store_bytes_per_subject"]
                   * FULL["thuman_scans"])
    return {"core_hours": {k: round(v / 3600, 1) for k, v in core_seconds.items()},
            "dominant": max(core_seconds, key=core_seconds.get),
            "wall_hours": {m: round(total / cores / 3600, 2) for m, cores in MACHINES.items()},
            "view_store_terabytes": round(store_bytes / 1e12, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stage", choices=STAGES)
    ap.add_argument("--folder")
    ap.add_argument("--profile", default="real-size", choices=("demo", "real-size"))
    ap.add_argument("--no-baseline", action="store_true", help="skip the demo profile's run")
    ap.add_argument("--keep", help="work in this folder and keep it (a rerun skips a finished stand-in)")
    args = ap.parse_args()
    if args.stage:  # a child: one stage
        import torch

        torch.set_num_threads(1)
        folder = Path(args.folder)
        res = stage(args.stage, folder / "standin", folder / "data", args.profile)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        res["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)
        res["cpu_seconds"] = round(usage.ru_utime + usage.ru_stime, 1)
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in res.items()}))
        return
    with tempfile.TemporaryDirectory(prefix="morphable-bench-real-") as tmp:
        tmp = args.keep or tmp
        result = {"spec": SPEC, "cpu_count": os.cpu_count()}
        result[args.profile] = run_profile(args.profile, Path(tmp) / args.profile)
        if all("error" not in v for v in result[args.profile].values()) and len(result[args.profile]) == len(STAGES):
            result["capacity"] = capacity(result[args.profile])
        if not args.no_baseline and args.profile != "demo":
            result["demo"] = run_profile("demo", Path(tmp) / "demo")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    sys.exit(main())
