"""Views benchmarks: loader samples/s and bytes on disk, zarr view store vs the released PNG-per-view layout (same
views, same sampling, same process), plus preprocessing seconds per FaceScape view and per THuman scan.

The baseline layout is the release's: <out>/<sid>/<expr>/view_<v>/rgba_colorcalib.png (8-bit RGBA whose RGB keeps
the studio background, as the release writes it) + cameras.json, read with PIL as its loader does (17 PNGs per
sample, composited on white). A second size baseline writes the same PNGs with the background already white.
Prints JSON.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def export_png_layout(store, raw_views: dict, out: Path, white: bool = False) -> None:
    """The release's layout for the views of `store`; RGB from `raw_views` (with background) unless `white`."""
    from PIL import Image

    for name in store.items:
        folder = out / name.split("_")[0].zfill(2)
        cams = {}
        raw = raw_views[name]
        for i in store.views_of(name):
            v = int(store.view_id[i])
            d = folder / f"view_{v:05d}"
            d.mkdir(parents=True, exist_ok=True)
            rgb = store.rgb(int(i)) if white else raw["rgb"][list(raw["view_id"]).index(v)]
            Image.fromarray(np.concatenate([rgb, store.mask(int(i))[..., None]], -1)).save(d / "rgba_colorcalib.png")
            cams[str(v)] = {"intrinsics": store.K[i][:3, :3].tolist(), "extrinsics": store.RT[i].tolist(),
                            "angles": {"azimuth": float(store.angles[i, 0]), "elevation": float(store.angles[i, 1])}}
        (folder / "cameras.json").write_text(json.dumps(cams))


def png_sample(folder: Path, views: list[int], input_folder: Path, input_view: int) -> dict:
    from PIL import Image

    def load(f: Path, v: int) -> np.ndarray:
        rgba = np.asarray(Image.open(f / f"view_{v:05d}" / "rgba_colorcalib.png")).astype(np.float32) / 255
        return (rgba[..., :3] * rgba[..., 3:] + (1 - rgba[..., 3:])) * 2 - 1

    cams = json.loads((folder / "cameras.json").read_text())
    return {"target_image": np.stack([load(folder, v) for v in views]), "input_image": load(input_folder, input_view),
            "target_RT": np.array([cams[str(v)]["extrinsics"] for v in views], np.float32)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root")
    ap.add_argument("--samples", type=int, default=40)
    args = ap.parse_args()
    from pipelines.demo_data import ensure_demo_data
    from pipelines.settings import load_settings
    from pipelines.track import track
    from pipelines.training_data import MultiViewDataset
    from pipelines.views import facescape_expression_views, views
    from storage.facescape import FaceScapeDataset
    from storage.views import ViewStore, store_path

    base = Path(args.root or tempfile.mkdtemp())
    ensure_demo_data(base / "synthetic", 0)
    s = load_settings(env={"MORPHABLE_SYNTHETIC_ROOT": str(base / "synthetic"), "MORPHABLE_DATA_ROOT": str(base)})
    per_view, per_scan = [], []
    for subject in ("1", "2"):
        track(s, "facescape", subject, "flame")
        per_view.append(views(s, "facescape", subject).per_view_seconds)
    track(s, "thuman", "0003")
    per_scan.append(views(s, "thuman", "0003").seconds)

    ds = MultiViewDataset(s.storage_root, "facescape")
    png_root, white_root = base / "png_layout", base / "png_layout_white"
    fs = FaceScapeDataset(s.facescape_root, s.facescape_rt_scale_dict)
    zarr_bytes = 0
    for subject in ("1", "2"):
        st = ViewStore.open(store_path(s.storage_root, "facescape", "flame", subject))
        raw = {name: facescape_expression_views(fs, subject, name) for name in st.items}
        export_png_layout(st, raw, png_root / subject.zfill(3))
        export_png_layout(st, raw, white_root / subject.zfill(3), white=True)
        zarr_bytes += du(st.path)
    png_bytes, white_bytes = du(png_root), du(white_root)

    # identical sampling for both loaders
    plan = []
    for n in range(args.samples):
        i = n % len(ds)
        rng = np.random.default_rng(n)
        item = ds.items[i]
        st = ds.store(item.subject)
        targets = rng.choice(item.target_views, 16, replace=False)
        in_name = list(item.input_views)[0]
        plan.append((i, st, targets, in_name, int(item.input_views[in_name][0])))
    t = time.perf_counter()
    for n in range(args.samples):
        ds[n % len(ds)]
    zarr_rate = args.samples / (time.perf_counter() - t)
    t = time.perf_counter()
    for i, st, targets, in_name, in_view in plan:
        item = ds.items[i]
        folder = png_root / item.subject.zfill(3) / item.target.split("_")[0].zfill(2)
        in_folder = png_root / item.subject.zfill(3) / in_name.split("_")[0].zfill(2)
        png_sample(folder, [int(st.view_id[v]) for v in targets], in_folder, int(st.view_id[in_view]))
    png_rate = args.samples / (time.perf_counter() - t)
    print(json.dumps({
        "loader_samples_per_s": {"zarr_store": round(zarr_rate, 2), "png_per_view_baseline": round(png_rate, 2),
                                 "speedup": round(zarr_rate / png_rate, 2)},
        "bytes_on_disk": {"zarr_store": zarr_bytes, "png_per_view_baseline": png_bytes,
                          "ratio": round(zarr_bytes / png_bytes, 3),
                          "png_with_white_background": white_bytes,
                          "ratio_to_white_png": round(zarr_bytes / white_bytes, 3)},
        "facescape_seconds_per_view": round(float(np.mean(per_view)), 3),
        "thuman_seconds_per_scan_32_views": round(float(np.mean(per_scan)), 2),
        "samples": args.samples, "views": int(sum(len(ViewStore.open(store_path(s.storage_root, "facescape", "flame", x)))
                                                  for x in ("1", "2"))),
    }, indent=1))


if __name__ == "__main__":
    main()
