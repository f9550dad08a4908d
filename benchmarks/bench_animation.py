"""Animation: the consistent samplers against independent per-frame sampling, same frames, same run.

A held-out identity of the demo stand-in (default 122: neither the shipped reference model nor the demo's
fine-tune saw it) is driven from one of its tracked expressions to another over `--frames` frames (the conditioning
meshes interpolated vertex by vertex between the two tracked FLAME meshes, model frame), from its most frontal view of
the first expression, at 16 cameras of the second expression's view store (so the last frame has a ground truth).
Every `pipelines.animate` mode runs on the same frames (`warm_start` at each `--strengths`); per mode:

- `warping_error`: E_warp of each view's frame sequence along the driving meshes' motion
  (`model.metrics.temporal`), averaged over views; `flicker`: the mean frame-to-frame change of the pixels outside
  both meshes' silhouettes (the background: nothing there moves);
- per-frame quality: silhouette IoU of every generated view with the driving mesh's silhouette (mean over frames),
  and at the last frame masked PSNR / SSIM against the stand-in's views of that expression;
- seconds per frame (16 views).
Needs the demo's view stores (`make demo`; `MORPHABLE_DATA_ROOT` points at another data root). Prints JSON; the
`ratio` is independent's warping error over each mode's.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=str(REPO / "pretrained" / "tiny-facescape-reference"))
    ap.add_argument("--subject", default="122")
    ap.add_argument("--from-item", help="the first expression (default: the store's first)")
    ap.add_argument("--to-item", help="the last expression (default: the store's last)")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--steps", type=int, default=20, help="DDIM steps (the demo's protocols use 20)")
    ap.add_argument("--strengths", type=float, nargs="+", default=[0.3, 0.5])
    ap.add_argument("--out", help="also keep each mode's grid video here")
    args = ap.parse_args()

    from model.diffusion.ddim import DDIMConfig
    from model.metrics.image import psnr, silhouette_iou, ssim
    from pipelines import catalog
    from pipelines.animate import AnimationConfig, animate_views, temporal_scores
    from pipelines.evaluation_sets import _mesh_faces, _resize, mesh_silhouettes
    from pipelines.training_data import scale_intrinsics
    from pipelines.model_loading import load_model
    from pipelines.settings import load_settings
    from storage.video import grid, write_animated
    from storage.views import ViewStore, store_path

    settings = load_settings()
    topology = catalog.dataset("facescape").default_topology
    st = ViewStore.open(store_path(settings.storage_root, "facescape", topology, args.subject))
    items = st.items
    a, b = args.from_item or items[0], args.to_item or items[-1]
    loaded = load_model(args.checkpoint, projection="perspective", use="animation benchmark", settings=settings,
                        sampler=DDIMConfig(steps=args.steps))
    model, cfg = loaded.model, loaded.model.cfg
    size = cfg.image_size
    views_a, views_b = st.views_of(a).tolist(), st.views_of(b).tolist()
    inp_view = min(views_a, key=lambda i: abs(float(st.angles[i][0])))
    targets = sorted(views_b, key=lambda i: float(st.angles[i][0]))[:cfg.view_num]
    if len(targets) < cfg.view_num:
        raise SystemExit(f"{args.subject}/{b} has {len(targets)} views; the model generates {cfg.view_num}")
    inp = _resize(st.rgb_many(np.array([inp_view])), size)[0].astype(np.float32) / 127.5 - 1.0
    k = scale_intrinsics(st.K[targets], "facescape", size)
    rt = st.RT[targets].astype(np.float64)
    gt = _resize(st.rgb_many(np.array(targets)), size)
    gt_mask = _resize(st.mask_many(np.array(targets)), size, nearest=True)
    va, vb = st.geometry(a).vertices.astype(np.float64), st.geometry(b).vertices.astype(np.float64)
    w = np.linspace(0, 1, args.frames)[:, None, None]
    meshes = (1 - w) * va + w * vb
    faces = _mesh_faces(settings, "facescape", topology, args.subject)
    sil = np.stack([mesh_silhouettes(m, faces, k, rt, size) for m in meshes]) > 0  # (T, N, H, W)
    ddim = DDIMConfig(steps=args.steps)
    modes = [("independent", AnimationConfig(mode="independent")),
             ("shared_noise", AnimationConfig(mode="shared_noise"))]
    modes += [(f"warm_start_{s:g}", AnimationConfig(mode="warm_start", strength=s)) for s in args.strengths]
    result = {"subject": args.subject, "from": a, "to": b, "frames": args.frames, "views": len(targets),
              "image_size": size, "ddim_steps": args.steps, "checkpoint": args.checkpoint, "modes": {}}
    for name, config in modes:
        t0 = time.perf_counter()
        views = animate_views(model, inp, k, rt, meshes, ddim, config)  # (T, N, H, W, 3)
        seconds = time.perf_counter() - t0
        scores = temporal_scores(views, meshes, faces, k, rt)
        iou = [[silhouette_iou(sil[t, i], views[t, i]) for i in range(len(targets))] for t in range(args.frames)]
        last = views[-1]
        result["modes"][name] = {
            "warping_error": scores["warping_error"], "flicker": scores["flicker"],
            "iou_with_driving_mesh": float(np.mean(iou)),
            "last_frame_masked_psnr": float(np.mean([psnr(gt[i], last[i], gt_mask[i]) for i in range(len(targets))])),
            "last_frame_ssim": float(np.mean([ssim(gt[i], last[i]) for i in range(len(targets))])),
            "seconds_per_frame": round(seconds / args.frames, 2)}
        if args.out:
            write_animated(Path(args.out) / f"{name}.webp", grid(views), 8.0)
        print(json.dumps({name: result["modes"][name]}), flush=True)
    base = result["modes"]["independent"]["warping_error"]
    for name, row in result["modes"].items():
        row["ratio"] = round(base / row["warping_error"], 2) if row["warping_error"] > 0 else None
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
