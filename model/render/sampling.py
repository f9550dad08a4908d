"""Bilinear reads of an image at real-valued pixel coordinates (pixel centres at integers), clamped to the border:
the colour calibration samples scan vertices with it, the temporal metrics warp frames along a flow."""
from __future__ import annotations

import numpy as np


def bilinear_sample(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """`image` (H, W[, C]) read at `uv` (..., 2) = (x, y): shape uv.shape[:-1] (+ (C,)), float64 where `image` is."""
    h, w = image.shape[:2]
    x = np.clip(uv[..., 0], 0, w - 1)
    y = np.clip(uv[..., 1], 0, h - 1)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = x - x0, y - y0
    if image.ndim == 3:
        fx, fy = fx[..., None], fy[..., None]
    return ((1 - fx) * (1 - fy) * image[y0, x0] + fx * (1 - fy) * image[y0, x1]
            + (1 - fx) * fy * image[y1, x0] + fx * fy * image[y1, x1])
