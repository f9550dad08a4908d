"""Weights stored in the precision autocast computes them in (issue 23, item 2).

Under bf16 / fp16 autocast every convolution and linear layer of the denoising network casts its fp32 weight to the
low precision on each call: the fp32 copy only costs memory (3.4 GiB of the paper preset's UNet) and a cast per
launch. Stored in the low precision instead, the same rounding happens once, so the arithmetic is bit for bit the
same. Only the parts that run under the sampler's autocast are stored so: the UNet, the time embedding and the
spatial volume; the VAE and CLIP run outside it in fp32. Norm layers and the sparse convolutions (autocast keeps or
casts them differently) stay fp32. It is one-way: a model stored so samples only in that precision.
"""
from __future__ import annotations

import torch
from torch import nn

AUTOCAST_CAST = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose3d, nn.Linear)
#: a sampler precision's autocast dtype (DDIMConfig.resolved_precision); fp32: no autocast
LOW_PRECISION = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of "fp32" | "bf16" | "fp16" (None for fp32)."""
    if precision != "fp32" and precision not in LOW_PRECISION:
        raise ValueError(f"precision {precision!r}: choose fp32, bf16 or fp16")
    return LOW_PRECISION.get(precision)


def store_autocast_weights(model, dtype: torch.dtype) -> int:
    """Store the weights that autocast at `dtype` casts anyway in `dtype` (in place); the bytes saved. Idempotent;
    a model already stored in another low precision is refused."""
    current = getattr(model, "autocast_weights", None)
    if current is not None and current != dtype:
        raise ValueError(f"the model's weights are stored in {precision_name(current)}; it cannot sample in "
                         f"{precision_name(dtype)}: load the model again")
    saved, size = 0, torch.empty((), dtype=dtype).element_size()
    for part in (model.model, model.time_embed, model.spatial_volume):
        for module in part.modules():
            if isinstance(module, AUTOCAST_CAST):
                for p in module.parameters(recurse=False):
                    if p.dtype != dtype:
                        saved += p.numel() * (p.element_size() - size)
                        p.data = p.data.to(dtype)
    model.autocast_weights = dtype
    return saved


def check_weight_storage(model, device_type: str) -> None:
    """A clear error where a model stored in low precision would run without that autocast (a dtype mismatch deep
    in a convolution otherwise)."""
    stored = getattr(model, "autocast_weights", None)
    if stored is None:
        return
    if not torch.is_autocast_enabled(device_type) or torch.get_autocast_dtype(device_type) != stored:
        raise ValueError(f"the model's weights are stored in {precision_name(stored)} for sampling in that "
                         f"precision; to sample in another, load the model again")


def precision_name(dtype: torch.dtype) -> str:
    return {torch.float32: "fp32", **{v: k for k, v in LOW_PRECISION.items()}}.get(dtype, str(dtype))
