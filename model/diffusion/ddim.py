"""DDIM sampling with classifier-free guidance over jointly denoised views (spec §3.17).

Released behaviour by default (so released checkpoints reproduce): timesteps offset by +1 ([1, 21, ..., 981] for
50 steps), eta = 1, and the final step's "previous" alpha is alphas_cumprod[0] (not 1). Flags fix the latter two.
The model is called through `MultiViewDenoiser`: one `begin_step` per step (the spatial volume is built from all
views' latents there), then `eps` per chunk of `batch_view_num` views.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    import torch


PRECISIONS = ("auto", "fp32", "bf16", "fp16")
COMPILE_MODES = ("off", "reduce-overhead")
LATER_FIELDS = {"precision": "auto", "compile": "off"}


@dataclass(frozen=True)
class DDIMConfig:
    """The sampler's settings (released defaults); the single source of the sampling flags and run config."""

    steps: int = field(default=50, metadata={
        "help": "DDIM steps (released: 50; as released, every multiple of 1000 // steps is used, so 30 runs 31)"})
    eta: float = field(default=1.0, metadata={"help": "DDIM eta (released: 1.0)"})
    cfg_scale: float = field(default=2.0, metadata={"help": "classifier-free guidance scale (released: 2.0)"})
    batch_view_num: int = field(default=8, metadata={"help": "views per UNet batch (memory vs speed)"})
    timestep_offset: int = field(default=1, metadata={"help": "released: tau = [0, c, 2c, ...] + 1"})
    final_alpha_is_one: bool = field(default=False, metadata={
        "help": "released: the last step moves to alphas_cumprod[0], not 1"})
    seed: int = field(default=6033, metadata={"help": "sampling seed"})
    precision: str = field(default="auto", metadata={
        "choices": PRECISIONS, "help": "the network's arithmetic while sampling (autocast): auto = fp32 on CPU (the "
                                       "released numbers), bf16 on CUDA (docs/benchmarks.md); the sampler's own state "
                                       "and the VAE decode stay fp32"})
    compile: str = field(default="off", metadata={
        "choices": COMPILE_MODES, "help": "torch.compile of the UNet: reduce-overhead (CUDA graphs on a GPU; "
                                          "minutes of compilation, then faster steps)"})

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"sampler precision {self.precision!r}: choose one of {PRECISIONS}")
        if self.compile not in COMPILE_MODES:
            raise ValueError(f"sampler compile {self.compile!r}: choose one of {COMPILE_MODES}")
        if self.batch_view_num < 1:
            raise ValueError(f"batch_view_num must be at least 1, got {self.batch_view_num}")

    def identity(self) -> dict[str, Any]:
        """What names a sampling setup in digests: every field, but the later ones (precision, compile) only when
        not at their default, so evaluation sets and experiments named before them keep their names."""
        doc = dict(self.__dict__)
        for name, default in LATER_FIELDS.items():
            if doc[name] == default:
                doc.pop(name)
        return doc

    def resolved_precision(self, device_type: str) -> str:
        """fp32 | bf16 | fp16 on `device_type` ("cpu", "cuda")."""
        if self.precision != "auto":
            return self.precision
        return "bf16" if device_type == "cuda" else "fp32"


class MultiViewDenoiser(Protocol):
    def begin_step(self, x_t: "torch.Tensor", t: "torch.Tensor") -> Any:
        """Per-step state computed from all views' current latents (B, N, C, h, w), e.g. the spatial volume."""

    def eps(self, state: Any, x_t: "torch.Tensor", t: "torch.Tensor", views: "torch.Tensor",
            conditional: bool) -> "torch.Tensor":
        """Predicted noise for the selected views (B, n, C, h, w); `conditional=False` is the null condition."""


def ddim_timesteps(steps: int, total: int = 1000, offset: int = 1) -> np.ndarray:
    """The released "uniform" selection: every multiple of c = total // steps below total, plus the offset. When
    `steps` does not divide `total` this is more than `steps` timesteps (30 -> c = 33 -> 31 timesteps), as released.
    Where that reaches t = total (3 steps: 999 + 1), the release indexes past its schedule and fails; we drop it."""
    if not 1 <= steps <= total:
        raise ValueError(f"DDIM steps must be between 1 and {total}, got {steps}")
    tau = np.arange(0, total, total // steps) + offset
    return tau[tau < total]


def ddim_coefficients(alphas_cumprod: np.ndarray, config: DDIMConfig) -> dict[str, np.ndarray]:
    tau = ddim_timesteps(config.steps, len(alphas_cumprod), config.timestep_offset)
    a = alphas_cumprod[tau].astype(np.float64)
    a_prev = np.concatenate([[1.0 if config.final_alpha_is_one else alphas_cumprod[0]],
                             alphas_cumprod[tau[:-1]]]).astype(np.float64)
    sigma = config.eta * np.sqrt((1 - a_prev) / (1 - a) * (1 - a / a_prev))
    return {"timesteps": tau, "alpha": a, "alpha_prev": a_prev, "sigma": sigma}


def ddim_step(x: "torch.Tensor", eps: "torch.Tensor", alpha: float, alpha_prev: float, sigma: float,
              noise: "torch.Tensor | None") -> "torch.Tensor":
    """One update: x0 = (x - sqrt(1-a) eps) / sqrt(a); x' = sqrt(a') x0 + sqrt(max(1-a'-s^2, 1e-7)) eps + s z."""
    x0 = (x - (1 - alpha) ** 0.5 * eps) / alpha ** 0.5
    out = alpha_prev ** 0.5 * x0 + max(1 - alpha_prev - sigma ** 2, 1e-7) ** 0.5 * eps
    return out if noise is None else out + sigma * noise


def guided_eps(model: MultiViewDenoiser, state: Any, x: "torch.Tensor", t: "torch.Tensor",
               views: "torch.Tensor", cfg_scale: float) -> "torch.Tensor":
    """eps_u + s (eps_c - eps_u); a single conditional pass when s == 1, one batched pass of both where the model
    offers it (`eps_pair`)."""
    if cfg_scale == 1.0:
        return model.eps(state, x, t, views, True)
    if hasattr(model, "eps_pair"):
        eps_c, eps_u = model.eps_pair(state, x, t, views)
    else:
        eps_c, eps_u = model.eps(state, x, t, views, True), model.eps(state, x, t, views, False)
    return eps_u + cfg_scale * (eps_c - eps_u)


def warm_start_steps(config: DDIMConfig, total: int, strength: float) -> int:
    """How many of the sampler's steps a warm start of `strength` (0, 1] runs: the last ceil(strength * n)."""
    if not 0 < strength <= 1:
        raise ValueError(f"warm-start strength must be in (0, 1], got {strength}")
    n = len(ddim_timesteps(config.steps, total, config.timestep_offset))
    return max(1, int(np.ceil(strength * n - 1e-9)))


def sample(model: MultiViewDenoiser, shape: tuple[int, ...], alphas_cumprod: np.ndarray,
           config: DDIMConfig = DDIMConfig(), device: str = "cpu", dtype=None,
           generator: "torch.Generator | None" = None, progress=None, init: "torch.Tensor | None" = None,
           strength: float = 1.0) -> "torch.Tensor":
    """Sample latents of `shape` = (B, N, C, h, w) from N(0, I) with DDIM + CFG; deterministic for a seed.
    `progress()`, when given, is called after each view batch of each step.

    Warm start (`init`, clean latents of `shape`, and `strength` < 1): only the last `warm_start_steps` steps run,
    from `init` noised to the first of them, x = sqrt(a) init + sqrt(1 - a) z, where z is the draw a fresh start
    would begin from; the skipped steps' noise is drawn and discarded, so every step that runs adds the same noise
    as it would in a fresh run of this seed (an animation's frames share their noise step by step)."""
    import torch

    gen = generator or torch.Generator(device=device).manual_seed(config.seed)
    dtype = dtype or torch.float32
    coef = ddim_coefficients(np.asarray(alphas_cumprod, np.float64), config)
    x = torch.randn(shape, generator=gen, device=device, dtype=dtype)
    n_views, n_steps = shape[1], len(coef["timesteps"])
    first = n_steps - 1
    if init is not None and strength < 1:
        if tuple(init.shape) != tuple(shape):
            raise ValueError(f"warm-start latents {tuple(init.shape)} do not match the sample shape {tuple(shape)}")
        first = warm_start_steps(config, len(alphas_cumprod), strength) - 1
        for _ in range(n_steps - 1, first, -1):  # the skipped steps' noise (steps i > 0 draw one each)
            torch.randn(shape, generator=gen, device=device, dtype=dtype)
        a = float(coef["alpha"][first])
        x = a ** 0.5 * init.to(device=device, dtype=dtype) + (1 - a) ** 0.5 * x
    for i in range(first, -1, -1):
        t = torch.full((shape[0],), int(coef["timesteps"][i]), device=device, dtype=torch.long)
        state = model.begin_step(x, t)
        eps = torch.empty_like(x)
        for start in range(0, n_views, config.batch_view_num):
            views = torch.arange(start, min(start + config.batch_view_num, n_views), device=device)
            # under autocast the network answers in bf16; the sampler's state stays in its own dtype
            eps[:, views] = guided_eps(model, state, x[:, views], t, views, config.cfg_scale).to(eps.dtype)
            if progress is not None:
                progress()
        noise = torch.randn(shape, generator=gen, device=device, dtype=dtype) if i > 0 else None
        x = ddim_step(x, eps, float(coef["alpha"][i]), float(coef["alpha_prev"][i]), float(coef["sigma"][i]), noise)
    return x
