"""Foundation benchmarks: synthetic stand-in generation, and our raw readers against a library baseline.

Prints one JSON document. Baselines run in the same process on the same files:
  * OBJ: storage.meshes.read_obj vs trimesh.load(process=False) (keeps UVs, vertex order differs in trimesh);
  * FLAME: our allow-listed legacy unpickler vs pickle with latin1 on a cleaned (plain-array) copy of the same model.
Usage: python benchmarks/bench_foundation.py [--root DIR]   (default: a temporary folder)
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import tempfile
import time
from pathlib import Path

from timing import best_of




def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root")
    args = ap.parse_args()
    import trimesh

    from model.bodies.flame import load_flame_landmarks, load_flame_model, write_smplx_flame_dir
    from pipelines.demo_data import generate_demo_data
    from storage.facescape import FaceScapeDataset
    from storage.meshes import read_obj

    root = Path(args.root or tempfile.mkdtemp()) / "synthetic"
    t = time.perf_counter()
    report = generate_demo_data(root, seed=0)
    gen_s = time.perf_counter() - t

    obj = root / "thuman" / "model" / "0003" / "0003.obj"
    ours_obj = best_of(lambda: read_obj(obj))
    trimesh_obj = best_of(lambda: trimesh.load(obj, process=False, force="mesh"))

    flame_dir = root / "body_models" / "flame"
    ours_flame = best_of(lambda: load_flame_model(flame_dir))
    clean = write_smplx_flame_dir(load_flame_model(flame_dir), load_flame_landmarks(flame_dir), root / "clean")
    plain_flame = best_of(lambda: pickle.loads((clean / "FLAME_NEUTRAL.pkl").read_bytes(), encoding="latin1"))

    ds = FaceScapeDataset(root / "facescape")
    tup = ds.tuple("1", "1_neutral")
    t = time.perf_counter()
    for v in tup.valid_views:
        ds.read_image(tup, v)
    per_image = (time.perf_counter() - t) / len(tup.valid_views)

    print(json.dumps({
        "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version()},
        "demo_data": {"seconds": round(gen_s, 2), **report.counts},
        "obj_read_ms": {"ours": round(ours_obj * 1e3, 1), "trimesh_baseline": round(trimesh_obj * 1e3, 1),
                        "speedup": round(trimesh_obj / ours_obj, 2)},
        "flame_load_ms": {"ours_legacy_unpickler": round(ours_flame * 1e3, 1),
                          "plain_pickle_on_cleaned_copy": round(plain_flame * 1e3, 1)},
        "facescape_image_decode_ms": round(per_image * 1e3, 2),
    }, indent=1))


if __name__ == "__main__":
    main()
