"""Stage `eval_set`: generate a protocol's evaluation set with a checkpoint, or with one of the two baselines.

Methods
* `model`: the checkpoint's 16-view sampler, DDIM (50 steps, CFG 2.0, batch_view_num 8 as released), one seeded
  sample per group of 16 targets (group g of a pair uses seed + g; the release pads targets to a multiple of 16).
* `copy_input`: the input view copied to every target (the "no 3D at all" baseline).
* `mean_train`: the mean of every training-split view of the dataset (the "average face / body" baseline).
Images are at the checkpoint's resolution (the released evaluation: 256; `tiny`: 64), on white.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from model.diffusion.ddim import DDIMConfig
from pipelines.protocols import EvalPair, Protocol, get_protocol, groups_of, resolve
from pipelines.settings import Settings
from pipelines.training_data import scale_intrinsics
from storage.eval_sets import FORMAT, EvalSet, eval_set_path, write_eval_set
from storage.views import ViewStore, store_path

METHODS = ("model", "copy_input", "mean_train")


@dataclass
class EvalSetResult:
    path: Path
    protocol: str
    method: str
    checkpoint_hash: str
    pairs: int
    views: int
    seconds: float
    reused: bool = False


def _resize(images: np.ndarray, size: int, nearest: bool = False) -> np.ndarray:
    import cv2

    if images.shape[1] == size:
        return images
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_AREA
    return np.stack([cv2.resize(x, (size, size), interpolation=interp) for x in images])


def mean_training_image(storage_root: str | Path, dataset: str, size: int) -> np.ndarray:
    """The per-pixel mean of every training-split view (uint8, on white)."""
    from pipelines.first_stage import collect_views

    imgs = collect_views(storage_root, (dataset,), size)["train"][dataset]
    return imgs.astype(np.float64).mean(0).round().astype(np.uint8)


def generate_eval_set(settings: Settings, protocol: str | Protocol, checkpoint: str | Path | None = None,
                      method: str = "model", sampler: DDIMConfig = DDIMConfig(), image_size: int | None = None,
                      device: str | None = None, log=print, overwrite: bool = False) -> EvalSetResult:
    """Write the evaluation set (atomically) and return where it is; an existing complete one is reused."""
    proto = get_protocol(protocol) if isinstance(protocol, str) else protocol
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    t0 = time.perf_counter()
    model = None
    if method == "model":
        if checkpoint is None:
            raise ValueError("method 'model' needs a checkpoint (folder or released .ckpt)")
        from pipelines.model_loading import PROJECTION_FOR, load_model

        loaded = load_model(checkpoint, projection=PROJECTION_FOR[proto.dataset], use=f"protocol {proto.name}",
                            device=device, settings=settings)
        model, ckpt_hash, checkpoint = loaded.model, loaded.checkpoint_hash, loaded.folder
        size = model.cfg.image_size
    else:
        size = image_size or 64
        ckpt_hash = f"baseline{size}"
    pairs = resolve(proto, settings.storage_root)
    if not pairs:
        raise ValueError(f"protocol {proto.name}: no evaluation pairs under {settings.storage_root}/views/"
                         f"{proto.dataset} (held-out subjects' views are missing: materialize them first)")
    inputs = _inputs_digest(settings, proto, pairs, sampler if method == "model" else None)
    target = eval_set_path(settings.storage_root, proto.name, method, f"{ckpt_hash}-{inputs}")
    if (target / "manifest.json").is_file() and not overwrite:
        es = EvalSet.open(target)
        return EvalSetResult(target, proto.name, method, ckpt_hash, len(es), sum(len(p["views"]) for p in
                                                                                 es.manifest["pairs"]), 0.0, True)
    mean_img = mean_training_image(settings.storage_root, proto.dataset, size) if method == "mean_train" else None
    n_views = 0

    from pipelines.progress import Progress

    bar = Progress(sum(len(p.target_views) for p in pairs), f"{proto.name}/{method} views", log)

    def fill(writer) -> None:
        nonlocal n_views
        for pair in pairs:
            arrays = _pair_arrays(settings, proto, pair, size, method, model, sampler, mean_img)
            writer.add(pair.key, {"subject": pair.subject, "item": pair.item, "input_item": pair.input_item,
                                  "input_view": pair.input_view, "views": pair.target_views}, **arrays)
            n_views += len(pair.target_views)
            bar.update(len(pair.target_views), note=pair.key)

    header = {"protocol": proto.name, "protocol_definition": proto.__dict__ | {"digest": proto.digest()},
              "method": method, "checkpoint": str(checkpoint) if checkpoint else None,
              "checkpoint_hash": ckpt_hash, "inputs_digest": inputs, "image_size": size,
              "sampler": sampler.__dict__ if method == "model" else None}
    write_eval_set(target, header, fill)
    bar.close()
    return EvalSetResult(target, proto.name, method, ckpt_hash, len(pairs), n_views, time.perf_counter() - t0)


def _inputs_digest(settings: Settings, proto: Protocol, pairs: list[EvalPair], sampler: DDIMConfig | None) -> str:
    """Hash of what the set depends on besides the weights: protocol, pairs, view-store contents, sampler."""
    import hashlib
    import json

    subjects = sorted({p.subject for p in pairs})
    stores = {s: ViewStore.open(store_path(settings.storage_root, proto.dataset, s)).manifest["content_hash"]
              for s in subjects}
    doc = {"format": FORMAT, "protocol": proto.digest(), "pairs": [p.__dict__ for p in pairs], "stores": stores,
           "sampler": sampler.__dict__ if sampler else None}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:10]


def _pair_arrays(settings: Settings, proto: Protocol, pair: EvalPair, size: int, method: str, model,
                 sampler: DDIMConfig, mean_img: np.ndarray | None) -> dict[str, np.ndarray]:
    from pipelines.generate import sample_views

    st = ViewStore.open(store_path(settings.storage_root, proto.dataset, pair.subject))
    views = np.asarray(pair.target_views)
    gt = _resize(st.rgb_many(views), size)
    mask = _resize(st.mask_many(views), size, nearest=True)
    inp = _resize(st.rgb_many(np.array([pair.input_view])), size)[0]
    k = scale_intrinsics(st.K[views], proto.dataset, size)
    rt = st.RT[views].astype(np.float64)
    if method == "copy_input":
        gen = np.repeat(inp[None], len(views), 0)
    elif method == "mean_train":
        gen = np.repeat(mean_img[None], len(views), 0)
    else:
        verts = st.geometry(pair.item).vertices
        position = {v: i for i, v in enumerate(pair.target_views)}
        gen = np.empty_like(gt)
        x_in = inp.astype(np.float32) / 127.5 - 1.0
        for g, group in enumerate(groups_of(pair.target_views)):
            idx = [position[v] for v in group]
            out = sample_views(model, x_in, k[idx], rt[idx], verts, replace(sampler, seed=sampler.seed + g))
            for j, i in enumerate(idx):
                gen[i] = out[j]
    return {"generated": gen, "gt": gt, "mask": mask, "input": inp, "view": views.astype(np.int32),
            "angles": st.angles[views].astype(np.float32),
            "K": k.astype(np.float32), "RT": rt.astype(np.float32)}
