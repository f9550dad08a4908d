"""The paper preset on a CPU, slowly but correctly: one DDIM step of 16 views with CFG 2.0 at batch_view_num 8
(the released sampler settings), random weights or an imported checkpoint (--checkpoint: a .ckpt or our folder).
Prints seconds (model build, the step) and the peak resident memory; the goal is <= 14 GB so a laptop with 16-24 GB
can try a real checkpoint. Not a test: run it by hand (about 2-4 minutes on 2 cores)."""
from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np
import torch


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # Linux: KiB


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", help="a released .ckpt or a checkpoint folder of the paper preset")
    ap.add_argument("--batch-view-num", type=int, default=8)
    args = ap.parse_args()
    from model.diffusion.config import paper
    from model.diffusion.ddim import DDIMConfig
    from pipelines.generate import sample_views, virtual_cameras

    out: dict = {"device": "cpu", "threads": torch.get_num_threads(), "batch_view_num": args.batch_view_num}
    t = time.perf_counter()
    with torch.no_grad():
        if args.checkpoint:
            from pipelines.model_loading import load_model
            from pipelines.settings import load_settings

            model = load_model(args.checkpoint, "perspective", device="cpu", settings=load_settings()).model
        else:
            from model.diffusion.network import MorphableDiffusion

            torch.manual_seed(0)
            model = MorphableDiffusion(paper()).eval()
    out["build_s"] = round(time.perf_counter() - t, 1)
    out["parameters"] = sum(p.numel() for p in model.parameters())
    out["rss_after_build_gib"] = round(peak_rss_gib(), 2)
    rng = np.random.default_rng(0)
    # a head-sized ellipsoid of vertices in the model frame (the conditioning volume only needs points)
    d = rng.normal(size=(5023, 3))
    verts = d / np.linalg.norm(d, axis=1, keepdims=True) * [0.19, 0.25, 0.22]
    image = rng.uniform(-1, 1, (256, 256, 3)).astype(np.float32)
    ks, rts = virtual_cameras(256, 16)
    t = time.perf_counter()
    views = sample_views(model, image, ks, rts, verts, DDIMConfig(steps=1, cfg_scale=2.0,
                                                                  batch_view_num=args.batch_view_num))
    out["one_ddim_step_s"] = round(time.perf_counter() - t, 1)
    out["views"] = list(views.shape)
    out["peak_rss_gib"] = round(peak_rss_gib(), 2)
    out["goal_peak_rss_gib"] = 14.0
    out["meets_goal"] = out["peak_rss_gib"] <= 14.0
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
