"""One way to turn a checkpoint (our folder, or a released `.ckpt`, imported once) into a ready network.

The folder is verified against its manifest (storage.checkpoints), its model configuration is read with a named
error, the projection is checked against what the caller's cameras are, and the weights are loaded strictly through
the same key/shape comparison as the released checkpoints (model.diffusion.checkpoints), so a config.json of another
preset or edited weights give one line naming the checkpoint and the first mismatched keys, not a torch traceback.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines import catalog



@dataclass
class LoadedModel:
    model: Any  # MorphableDiffusion, in eval mode
    config: dict  # the checkpoint's config.json
    checkpoint_hash: str
    folder: Path


def load_model(checkpoint: str | Path, projection: str | None = None, use: str = "", device: str | None = None,
               settings=None, sampler=None) -> LoadedModel:
    """`projection`: the camera model the caller will use ("perspective" for faces, "orthographic" for THuman).
    A released checkpoint file is imported into `settings.storage_root` first (cached by its sha256). `sampler`
    (a DDIMConfig) marks an inference-only load: where it samples in bf16 / fp16, the weights autocast casts are
    stored in that precision (model.diffusion.precision: the same arithmetic in half the memory)."""
    import torch

    from model.diffusion.checkpoints import CheckpointError, import_morphable
    from model.diffusion.config import ModelConfig
    from model.diffusion.network import MorphableDiffusion
    from pipelines.import_checkpoint import checkpoint_folder, is_checkpoint_file
    from storage.checkpoints import checkpoint_hash, load_checkpoint

    folder = Path(checkpoint)
    if is_checkpoint_file(folder):
        if settings is None:
            raise ValueError(f"{folder}: a released checkpoint file needs settings (its import goes to the store)")
        folder = checkpoint_folder(settings, folder, projection or "perspective")
    tensors, config = load_checkpoint(folder)
    try:
        cfg = ModelConfig.from_dict(config["model"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(folder / "config.json", f"holds no usable model configuration ({exc})",
                              "re-create the checkpoint") from None
    if projection is not None and cfg.projection != projection:
        dataset = config.get("training", {}).get("dataset", "?")
        raise CheckpointError(folder, f"is a {cfg.projection}-camera model (trained on {dataset}); {use or 'this'} "
                                      f"uses {projection} cameras",
                              f"use a checkpoint trained for {projection} cameras "
                              f"({catalog.dataset(catalog.dataset_of_projection(projection)).title})")
    model = MorphableDiffusion(cfg)
    import_morphable(model, tensors, str(folder))
    model.eval()
    model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if sampler is not None:
        from model.diffusion.precision import autocast_dtype, store_autocast_weights

        low = autocast_dtype(sampler.resolved_precision(next(model.parameters()).device.type))
        if low is not None:
            store_autocast_weights(model, low)
    return LoadedModel(model, config, checkpoint_hash(folder), folder)
