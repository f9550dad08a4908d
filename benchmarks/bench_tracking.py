"""Tracking benchmarks: FaceScape FLAME fit (seconds per expression) and single-image fit (seconds per image).

Runs each on 1 CPU thread (the figure the issue asks for) and, as the in-run comparison, on all cores; also reports
accuracy against the stand-in's ground truth. Prints JSON.
Usage: python benchmarks/bench_tracking.py [--root DIR]   (a stand-in is generated there if missing)
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root")
    args = ap.parse_args()
    import torch

    from model.bodies.flame import load_flame_landmarks, load_flame_model
    from model.tracking.flame_fit import FitTarget, fit_flame
    from model.tracking.single_image import fit_flame_to_image
    from pipelines.demo_data import ensure_demo_data
    from storage.facescape import FaceScapeDataset
    from storage.images import read_rgb

    root = Path(args.root or tempfile.mkdtemp()) / "synthetic"
    ensure_demo_data(root, 0)
    model, lmk = load_flame_model(root / "body_models/flame"), load_flame_landmarks(root / "body_models/flame")
    ds = FaceScapeDataset(root / "facescape")
    idx = np.load(root / "facescape_toolkit/predef/landmark_indices.npz")["v10"]
    targets = []
    for e in ds.expressions("2"):
        m = ds.read_registered_mesh(ds.tuple("2", e))
        v = m.vertices / 1000
        targets.append(FitTarget(e, v, m.faces, v[idx[17:]]))
    shared = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "stylegan1.png"
    image = read_rgb(shared) if shared.is_file() else read_rgb(ds.tuple("1", "1_neutral").images[7])
    results = {}
    for threads in (1, os.cpu_count() or 1):
        torch.set_num_threads(threads)
        t = time.perf_counter()
        fit = fit_flame(model, lmk, targets)
        per_expr = (time.perf_counter() - t) / len(targets)
        t = time.perf_counter()
        img_fit = fit_flame_to_image(model, lmk, image)
        per_image = time.perf_counter() - t
        results[f"threads_{threads}"] = {"facescape_fit_s_per_expression": round(per_expr, 2),
                                         "single_image_fit_s_per_image": round(per_image, 2)}
    errs = []
    for e in fit.vertices:
        gt = np.load(root / "ground_truth/facescape/2" / f"{e}.npz")
        gt_v = gt["flame_vertices"] * gt["tu_scale"]
        errs.append(np.linalg.norm(fit.vertices[e] - gt_v, axis=1).mean() / np.linalg.norm(np.ptp(gt_v, 0)))
    print(json.dumps({
        "facescape_fit": {"expressions": len(targets), "flame_vertices": model.num_vertices,
                          "tu_vertices": int(len(targets[0].vertices)),
                          "vertex_error_fraction_of_bbox_diag_max": round(float(max(errs)), 5),
                          "p95_point_to_surface_mm_max": round(max(v["p95_mm"] for v in fit.errors.values()), 3)},
        "single_image_fit": {"image": str(shared.name if shared.is_file() else "synthetic view"),
                             "reprojection_px": round(img_fit.pixel_error, 2),
                             "reprojection_fraction_of_image": round(img_fit.relative_error, 4)},
        "timing": results,
        "released_reference": "MICA + metrical-tracker: ~36 s per frame on a GPU (anchors.md)",
    }, indent=1))


if __name__ == "__main__":
    main()
