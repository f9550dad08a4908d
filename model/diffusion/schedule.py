"""The SD-1.x "scaled linear" noise schedule (spec §3.2): 1000 steps, beta = linspace(sqrt(0.00085), sqrt(0.012))^2.

The buffer names and values match the released checkpoints' top-level buffers (stored as float32), including the
release's clamp of `posterior_log_variance_clipped` at -10 after the 1e-20 floor (it only changes t = 0, whose
variance is 0).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

T_STEPS = 1000
POSTERIOR_LOG_VARIANCE_MIN = -10.0  # released: torch.clamp(log(clamp(var, 1e-20)), min=-10)
BETA_START, BETA_END = 0.00085, 0.012


@dataclass(frozen=True)
class ScheduleConfig:
    steps: int = T_STEPS
    beta_start: float = BETA_START
    beta_end: float = BETA_END


def schedule_arrays(config: ScheduleConfig = ScheduleConfig()) -> dict[str, np.ndarray]:
    """The 7 released schedule buffers, computed in float64 and returned as float32."""
    betas = np.linspace(config.beta_start ** 0.5, config.beta_end ** 0.5, config.steps, dtype=np.float64) ** 2
    alphas = 1.0 - betas
    ac = np.cumprod(alphas)
    ac_prev = np.append(1.0, ac[:-1])
    posterior_variance = betas * (1.0 - ac_prev) / (1.0 - ac)
    out = {
        "betas": betas, "alphas": alphas, "alphas_cumprod": ac, "sqrt_alphas_cumprod": np.sqrt(ac),
        "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - ac), "posterior_variance": posterior_variance,
        "posterior_log_variance_clipped": np.maximum(np.log(np.maximum(posterior_variance, 1e-20)),
                                                     POSTERIOR_LOG_VARIANCE_MIN),
    }
    return {k: v.astype(np.float32) for k, v in out.items()}


def q_sample(x0, noise, t, alphas_cumprod):
    """x_t = sqrt(a_t) x0 + sqrt(1 - a_t) noise, with t of shape (B,) broadcast over the remaining axes."""
    a = alphas_cumprod[t].reshape(-1, *([1] * (x0.dim() - 1)))
    return a.sqrt() * x0 + (1 - a).sqrt() * noise
