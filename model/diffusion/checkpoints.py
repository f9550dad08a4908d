"""Importing the published checkpoints strictly, with explicit and documented ignore lists (never a non-strict load).

* `syncdreamer-pretrain.ckpt` (training init, manifests/README.md §5): the release keeps a key iff it contains
  "target_encoder" or does not contain "spatial_volume" (so SyncDreamer's spatial_volume_feats and
  frustum_volume_feats are dropped and retrained); `cc_projection.*` and the unused multi-view buffers are
  ignored; the sparse net, the vertex-feature conv and the frustum net stay at their initialisation.
* Morphable Diffusion checkpoints (generation): every key must match; only the unused multi-view buffers
  (`poses`, `Ks`, `azimuth`) may be present or absent.
Released files are full PyTorch Lightning training checkpoints (optimizer, loops, callbacks and hyper-parameters
next to `state_dict`). They are read through storage.safe_pickle: tensors are built from the file's storages
(memory-mapped), every other object becomes an inert placeholder; nothing the file names is imported or called.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from storage.errors import DataError
from storage.safe_pickle import load_torch

MULTIVIEW_BUFFERS = ("poses", "Ks", "azimuth")
SYNCDREAMER_IGNORED_UNEXPECTED = ("cc_projection.weight", "cc_projection.bias") + MULTIVIEW_BUFFERS
SYNCDREAMER_LEFT_AT_INIT = ("spatial_volume.frustum_volume_feats.", "spatial_volume.xyzc_net.",
                            "spatial_volume.smpl_feature_extractor.")


class CheckpointError(DataError):
    """A checkpoint that cannot be used: "<file>: <what is wrong>. Fix: <how>"."""


CKPT_FIX = "pass the released .ckpt (or a checkpoint folder written by this project) for this preset and projection"


@dataclass
class ImportReport:
    loaded: list[str] = field(default_factory=list)
    dropped_by_filter: list[str] = field(default_factory=list)
    ignored_unexpected: list[str] = field(default_factory=list)
    left_at_init: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.__dict__.items()}


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of a released `.ckpt` (PyTorch Lightning 1.x / 2.x, zip or legacy torch.save format) or of a
    bare state-dict file, memory-mapped where the file allows; whatever else the file holds is never run."""
    path = Path(path)
    try:
        obj = load_torch(path, placeholders=True, mmap=True, what="a PyTorch checkpoint", fix=CKPT_FIX)
    except DataError as exc:
        raise CheckpointError(path, exc.problem, exc.fix) from exc
    sd = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(sd, dict) or not sd:
        raise CheckpointError(path, f"holds no state dict (top level: {type(obj).__name__}"
                                    f"{' with keys ' + str(sorted(map(str, obj))[:8]) if isinstance(obj, dict) else ''})",
                              CKPT_FIX)
    bad = [str(k) for k, v in sd.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(path, f"its state dict holds {len(bad)} entries that are not tensors (first: "
                                    f"{bad[:3]})", CKPT_FIX)
    return sd


def syncdreamer_keeps(key: str) -> bool:
    """The release's `load_entire_model` filter."""
    return "target_encoder" in key or "spatial_volume" not in key


def _strict_load(model: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    current = model.state_dict()
    for k, v in tensors.items():
        if tuple(v.shape) != tuple(current[k].shape):
            raise CheckpointError(source, f"{k} has shape {tuple(v.shape)}, the model expects "
                                          f"{tuple(current[k].shape)} (wrong preset or a different architecture)",
                                  CKPT_FIX)
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
            raise CheckpointError(source, f"unexpected key {key!r} (not a SyncDreamer checkpoint for this preset)",
                                  CKPT_FIX)
    for key in sorted(model_keys - set(rep.loaded)):
        if key.startswith(SYNCDREAMER_LEFT_AT_INIT) or key in MULTIVIEW_BUFFERS:
            rep.left_at_init.append(key)
        else:
            raise CheckpointError(source, f"missing key {key!r}; the checkpoint is incomplete or of another model",
                                  CKPT_FIX)
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
        raise CheckpointError(source, f"does not match the model (unexpected {extra[:5]}, missing {missing[:5]}; "
                                      f"{len(extra)} / {len(missing)} in all)", "check the preset and the projection")
    rep = ImportReport(loaded=sorted(k for k in state_dict if k in model_keys and k not in MULTIVIEW_BUFFERS),
                       ignored_unexpected=sorted(k for k in state_dict if k in MULTIVIEW_BUFFERS),
                       left_at_init=sorted(k for k in MULTIVIEW_BUFFERS if k in model_keys))
    _strict_load(model, {k: state_dict[k] for k in rep.loaded}, source)
    return rep
