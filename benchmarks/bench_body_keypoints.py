"""Body PCK's fit, its ceiling and its cost: SMPL-X fitted (model.metrics.body_keypoints) to the 16-view orthographic
silhouettes of bodies whose SMPL-X is known, scored against that SMPL-X (the ceiling: what a perfect generator
would score) and, as the control in the same run, to another body's silhouettes scored against the first body.

Reads the view stores of the body reference's stand-in (`<data_root>/reference/store`, written by `morphable
train-reference --dataset thuman`: 64 bodies in varied poses) or any store given with --store; writes nothing.
Prints JSON.

    .venv/bin/python benchmarks/bench_body_keypoints.py [--store DIR] [--bodies 10]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    from pipelines.settings import load_settings

    settings = load_settings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=settings.data_root / "reference" / "store",
                        help="storage root holding views/thuman/smplx/<uid>.zarr (default: the body reference's)")
    parser.add_argument("--bodies", type=int, default=10, help="bodies to fit (the first ones in id order)")
    parser.add_argument("--smplx-dir", type=Path, default=None,
                        help="SMPL-X model folder (default: the store's own stand-in's, <store>/../synthetic/"
                             "body_models/smplx, where it exists, else the configured smplx_model_dir)")
    args = parser.parse_args()
    beside = args.store.parent / "synthetic" / "body_models" / "smplx"
    smplx_dir = args.smplx_dir or (beside if beside.is_dir() else settings.smplx_model_dir)
    print(json.dumps(run(smplx_dir, args.store, args.bodies), indent=1))


def run(smplx_dir: Path, store: Path, bodies: int) -> dict:
    from model.bodies.smplx_body import load_thuman_smplx
    from model.metrics.body_keypoints import BodyFitConfig, body_pck
    from pipelines.evaluation_sets import mesh_silhouettes
    from pipelines.training_data import scale_intrinsics
    from storage.views import ViewStore, store_path, store_subjects

    uids = sorted(store_subjects(store, "thuman", "smplx"), key=lambda s: (len(s), s))[:bodies]
    if len(uids) < 2:
        raise SystemExit(f"{store}: fewer than 2 THuman view stores under views/thuman/smplx; run `morphable "
                         "train-reference --dataset thuman` (or `make demo` and pass --store <data_root>/store)")
    model = load_thuman_smplx(smplx_dir)
    faces = model.faces.astype(np.int64)
    first = ViewStore.open(store_path(store, "thuman", "smplx", uids[0]))
    views = first.views_of("scan", role=0)[:16]
    k, rt = scale_intrinsics(first.K[views], "thuman", 64), first.RT[views].astype(np.float64)
    verts = {u: ViewStore.open(store_path(store, "thuman", "smplx", u)).geometry("scan").vertices for u in uids}
    masks = {u: mesh_silhouettes(v, faces, k, rt, 64, "orthographic") for u, v in verts.items()}
    own, other, seconds = [], [], []
    for i, u in enumerate(uids):
        t = time.perf_counter()
        own.append(float(body_pck(model, masks[u], k, rt, verts[u], verts[u]).pck.mean()))
        seconds.append(time.perf_counter() - t)
        v = uids[(i + 1) % len(uids)]  # another body's silhouettes, placed and scored on this one
        other.append(float(body_pck(model, masks[v], k, rt, verts[u], verts[u]).pck.mean()))
    return {"store": str(store), "bodies": uids, "views": len(views), "image_size": 64,
            "config": BodyFitConfig().__dict__,
            "own_silhouettes_pck": {"mean": round(float(np.mean(own)), 3), "min": round(float(np.min(own)), 3),
                                    "per_body": [round(x, 3) for x in own]},
            "another_bodys_silhouettes_pck": {"mean": round(float(np.mean(other)), 3),
                                              "max": round(float(np.max(other)), 3)},
            "seconds_per_fit": {"median": round(float(np.median(seconds)), 2), "max": round(float(np.max(seconds)), 2)}}


if __name__ == "__main__":
    main()
