"""What portable maths costs: model.portable_math and model.bodies.portable_lbs against the kernels they replace in
the stand-in generator (numpy's SIMD / libm functions, BLAS products, the torch FLAME and SMPL-X forwards), in the
same run on the same inputs; and ray casting with float64 hit recomputation against open3d's float32 hits alone.

Prints one JSON document (best of 5, seconds). Usage: python benchmarks/bench_portable.py [--root DIR]
(a stand-in is written to a temporary folder unless DIR holds one).
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

from timing import best_of

import numpy as np


def elementary() -> dict:
    from model import portable_math as pm

    rng = np.random.default_rng(0)
    x, y = rng.uniform(-3, 3, 1_000_000), rng.normal(size=1_000_000)
    pts, rot = rng.normal(size=(1_000_000, 3)), rng.normal(size=(3, 3))
    pairs = {
        "sin": (lambda: pm.sin(x), lambda: np.sin(x)),
        "exp": (lambda: pm.exp(x), lambda: np.exp(x)),
        "arctan2": (lambda: pm.arctan2(y, x), lambda: np.arctan2(y, x)),
        "power_1.4": (lambda: pm.power(np.abs(x), 1.4), lambda: np.abs(x) ** 1.4),
        "points_x_rotation": (lambda: pm.transform_points(pts, rot), lambda: pts @ rot.T),
        "norm_rows": (lambda: pm.norm(pts, axis=1), lambda: np.linalg.norm(pts, axis=1)),
    }
    return {name: {"portable_s_per_1M": best_of(ours), "numpy_s_per_1M": best_of(ref)}
            for name, (ours, ref) in pairs.items()}


def body_forwards(root: Path) -> dict:
    import torch

    from model.bodies.flame import load_flame_landmarks, load_flame_model
    from model.bodies.flame_layer import build_flame_layer
    from model.bodies.portable_lbs import flame_forward, smplx_forward
    from model.bodies.smplx_body import load_thuman_smplx, read_smplx_arrays, smplx_model_file

    flame = load_flame_model(root / "body_models" / "flame" / "generic_model.pkl")
    lmk = load_flame_landmarks(root / "body_models" / "flame")
    layer = build_flame_layer(flame, lmk, dtype=torch.float64)
    p = {"shape": np.zeros(300), "expression": np.zeros(100), "jaw_pose": np.array([0.2, 0, 0])}
    tp = {k: torch.tensor(v[None]) for k, v in p.items()}
    arrays = read_smplx_arrays(smplx_model_file(root / "body_models" / "smplx", "male"))
    body = load_thuman_smplx(root / "body_models" / "smplx")
    q = {"body_pose": np.full(63, 0.1)}
    tq = {k: torch.tensor(v[None], dtype=torch.float32) for k, v in q.items()}

    def torch_flame():
        with torch.no_grad():
            layer(**tp)

    def torch_smplx():
        with torch.no_grad():
            body(**tq)

    return {"flame_vertices_landmarks": {"portable_s": best_of(lambda: flame_forward(flame, p, lmk)),
                                         "torch_float64_s": best_of(torch_flame)},
            "smplx_vertices": {"portable_float64_s": best_of(lambda: smplx_forward(arrays, q)),
                               "smplx_torch_float32_s": best_of(torch_smplx)}}


def ray_casting() -> dict:
    import open3d as o3d
    import trimesh

    from model.render.cameras import intrinsics, look_at, pixel_rays
    from model.render.raycast import MeshRaycaster

    sphere = trimesh.creation.icosphere(subdivisions=6, radius=0.1)
    caster = MeshRaycaster(np.asarray(sphere.vertices), np.asarray(sphere.faces))
    out = {}
    for w, h in ((300, 400), (1800, 2400)):
        k, rt = intrinsics(750.0 * w / 300, w, h), look_at(np.array([0.0, 0.0, 0.9]), np.zeros(3))
        dist = np.array([-0.05, 0.01, 1e-4, -2e-4, 0.0])
        origins, dirs = pixel_rays(k, rt, w, h, dist)
        rays = o3d.core.Tensor(np.concatenate([origins, dirs], 1).astype(np.float32))
        hits = caster.cast(k, rt, w, h, dist)
        out[f"{w}x{h}"] = {"hits": int(hits.mask.sum()),
                           "ours_cast_s": best_of(lambda: caster.cast(k, rt, w, h, dist), 3),
                           "open3d_rays_only_s": best_of(lambda: caster.scene.cast_rays(rays), 3)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root")
    args = ap.parse_args()
    from pipelines.demo_data import MANIFEST, generate_demo_data

    root = Path(args.root) if args.root else Path(tempfile.mkdtemp()) / "synthetic"
    standin_s = None
    if not (root / MANIFEST).is_file():
        t = time.perf_counter()
        generate_demo_data(root, seed=0, workers=1)
        standin_s = round(time.perf_counter() - t, 1)
    print(json.dumps({"machine": platform.processor() or platform.machine(), "elementary": elementary(),
                      "body_forwards": body_forwards(root), "ray_casting": ray_casting(),
                      "demo_standin_one_process_s": standin_s}, indent=1))


if __name__ == "__main__":
    main()
