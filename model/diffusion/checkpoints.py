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


#: what only a Morphable Diffusion network holds: the 3DMM branch (the mesh's sparse net) that SyncDreamer lacks
MORPHABLE_ONLY = ("spatial_volume.xyzc_net.",)


def recognise_kind(state_dict: dict[str, torch.Tensor], source: str) -> str:
    """"morphable" when the file holds the 3DMM branch, "syncdreamer" when it holds SyncDreamer's own volume net
    (or no spatial volume beyond the target encoder) and the rest of the network."""
    if any(k.startswith(MORPHABLE_ONLY) for k in state_dict):
        return "morphable"
    if any(k.startswith("model.diffusion_model.") for k in state_dict):
        return "syncdreamer"
    raise CheckpointError(source, "holds neither a Morphable Diffusion nor a SyncDreamer network (no "
                                  "model.diffusion_model.* weights)", CKPT_FIX)


def _schedule_problem(sd: dict[str, torch.Tensor]) -> tuple[str, str] | None:
    """(key, what is wrong) for schedule buffers that are not one valid noise schedule, else None."""
    names = ("betas", "alphas_cumprod", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod")
    if not all(k in sd for k in names):
        return None
    b, ac = sd["betas"].double(), sd["alphas_cumprod"].double()
    if not ((b > 0) & (b < 1)).all():
        return "betas", "holds values outside (0, 1)"
    # float32 in the release, float16 in a shipped model (and in whatever was fine-tuned from it, whose float32
    # buffers hold float16-rounded values): rounding compounds over the 1000-step product
    rtol = 8 * max(torch.finfo(torch.float16).eps, *(torch.finfo(sd[k].dtype).eps for k in names))
    if not torch.allclose(ac, torch.cumprod(1 - b, 0), rtol=rtol, atol=1e-7):
        return "alphas_cumprod", "is not the cumulative product of 1 - betas"
    if not torch.allclose(sd["sqrt_alphas_cumprod"].double() ** 2, ac, rtol=rtol, atol=1e-7):
        return "sqrt_alphas_cumprod", "is not sqrt(alphas_cumprod)"
    # (compared squared and absolutely: near t = 0, 1 - alphas_cumprod cancels to a few ulps in float16)
    if not torch.allclose(sd["sqrt_one_minus_alphas_cumprod"].double() ** 2, 1 - ac, rtol=0, atol=rtol):
        return "sqrt_one_minus_alphas_cumprod", "is not sqrt(1 - alphas_cumprod)"
    return None


def validate_tensors(state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Refuse weights no trained network has, before they reach a sampler: NaN or infinite values, a noise schedule
    that is not one, BatchNorm statistics with a negative variance or a negative count."""
    for key, v in state_dict.items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise CheckpointError(source, f"{key} holds NaN or infinite values", CKPT_FIX)
        if key.endswith(".running_var") and (v < 0).any():
            raise CheckpointError(source, f"{key} holds negative BatchNorm variances (not a trained network's "
                                          "statistics)", CKPT_FIX)
        if key.endswith(".num_batches_tracked") and (v < 0).any():
            raise CheckpointError(source, f"{key} is negative", CKPT_FIX)
    problem = _schedule_problem(state_dict)
    if problem:
        raise CheckpointError(source, f"schedule buffer {problem[0]} {problem[1]}: not a valid noise schedule",
                              CKPT_FIX)


def syncdreamer_keeps(key: str) -> bool:
    """The release's `load_entire_model` filter."""
    return "target_encoder" in key or "spatial_volume" not in key


def _strict_load(model: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    validate_tensors(tensors, source)
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
