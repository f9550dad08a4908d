"""Importing the published checkpoints strictly, with explicit and documented ignore lists (never a non-strict load).

* `syncdreamer-pretrain.ckpt` (training init, manifests/README.md §5): the release keeps a key iff it contains
  "target_encoder" or does not contain "spatial_volume" (so SyncDreamer's spatial_volume_feats and
  frustum_volume_feats are dropped and retrained); `cc_projection.*` and the unused multi-view buffers are
  ignored; the sparse net, the vertex-feature conv and the frustum net stay at their initialisation.
* Morphable Diffusion checkpoints (generation): every key must match; only the unused multi-view buffers
  (`poses`, `Ks`, `azimuth`) may be present or absent.
Files are read with `torch.load(weights_only=True)`: no pickled code runs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

MULTIVIEW_BUFFERS = ("poses", "Ks", "azimuth")
SYNCDREAMER_IGNORED_UNEXPECTED = ("cc_projection.weight", "cc_projection.bias") + MULTIVIEW_BUFFERS
SYNCDREAMER_LEFT_AT_INIT = ("spatial_volume.frustum_volume_feats.", "spatial_volume.xyzc_net.",
                            "spatial_volume.smpl_feature_extractor.")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used, with the file and the reason."""


@dataclass
class ImportReport:
    loaded: list[str] = field(default_factory=list)
    dropped_by_filter: list[str] = field(default_factory=list)
    ignored_unexpected: list[str] = field(default_factory=list)
    left_at_init: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.__dict__.items()}


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of a `.ckpt` / `.pt` (Lightning `state_dict` entry or a bare dict), without running pickles."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found; download it and set its path in morphable.toml")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # UnpicklingError for disallowed globals, RuntimeError for corrupt archives
        raise CheckpointError(f"{path}: cannot be read as a weights-only checkpoint ({type(exc).__name__}: {exc}). "
                              "Re-save it as a plain state dict or pass the original file.") from exc
    sd = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(sd, dict) or not all(isinstance(k, str) for k in sd):
        raise CheckpointError(f"{path}: holds no state dict")
    return sd


def syncdreamer_keeps(key: str) -> bool:
    """The release's `load_entire_model` filter."""
    return "target_encoder" in key or "spatial_volume" not in key


def _strict_load(model: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    current = model.state_dict()
    for k, v in tensors.items():
        if tuple(v.shape) != tuple(current[k].shape):
            raise CheckpointError(f"{source}: {k} has shape {tuple(v.shape)}, the model expects "
                                  f"{tuple(current[k].shape)} (wrong preset or a different architecture)")
    current.update({k: v.to(current[k].dtype) for k, v in tensors.items()})
    model.load_state_dict(current, strict=True)


def import_syncdreamer(model: torch.nn.Module, state_dict: dict[str, torch.Tensor],
                       source: str = "syncdreamer checkpoint") -> ImportReport:
    model_keys = set(model.state_dict())
    rep = ImportReport()
    for key in state_dict:
        if not syncdreamer_keeps(key):
            rep.dropped_by_filter.append(key)
        elif key in SYNCDREAMER_IGNORED_UNEXPECTED:
            rep.ignored_unexpected.append(key)
        elif key in model_keys:
            rep.loaded.append(key)
        else:
            raise CheckpointError(f"{source}: unexpected key {key!r} (not a SyncDreamer checkpoint for this preset)")
    for key in sorted(model_keys - set(rep.loaded)):
        if key.startswith(SYNCDREAMER_LEFT_AT_INIT) or key in MULTIVIEW_BUFFERS:
            rep.left_at_init.append(key)
        else:
            raise CheckpointError(f"{source}: missing key {key!r}; the checkpoint is incomplete or of another model")
    _strict_load(model, {k: state_dict[k] for k in rep.loaded}, source)
    for lst in rep.__dict__.values():
        lst.sort()
    return rep


def import_morphable(model: torch.nn.Module, state_dict: dict[str, torch.Tensor],
                     source: str = "Morphable Diffusion checkpoint") -> ImportReport:
    model_keys = set(model.state_dict())
    extra = sorted(set(state_dict) - model_keys - set(MULTIVIEW_BUFFERS))
    missing = sorted(model_keys - set(state_dict) - set(MULTIVIEW_BUFFERS))
    if extra or missing:
        raise CheckpointError(f"{source}: does not match the model (unexpected {extra[:5]}, missing {missing[:5]}; "
                              f"{len(extra)} / {len(missing)} in all); check the preset and the projection")
    rep = ImportReport(loaded=sorted(k for k in state_dict if k in model_keys and k not in MULTIVIEW_BUFFERS),
                       ignored_unexpected=sorted(k for k in state_dict if k in MULTIVIEW_BUFFERS),
                       left_at_init=sorted(k for k in MULTIVIEW_BUFFERS if k in model_keys))
    _strict_load(model, {k: state_dict[k] for k in rep.loaded}, source)
    return rep
