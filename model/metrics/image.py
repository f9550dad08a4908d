"""Pixel metrics on white-composited uint8 RGB images (the released evaluation's convention)."""
from __future__ import annotations

import numpy as np

WHITE_THRESHOLD = 240  # the release's alpha rule for generated images: a pixel is background if every channel > 240


def mask_background(generated: np.ndarray, gt_mask: np.ndarray) -> np.ndarray:
    """The release sets generated pixels white where the ground truth's alpha is 0 (before SSIM / LPIPS / FID)."""
    out = np.array(generated, np.uint8, copy=True)
    out[np.asarray(gt_mask) == 0] = 255
    return out


def psnr(gt: np.ndarray, generated: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB (data range 255); with `mask`, only over the masked pixels (the demo's masked PSNR)."""
    diff = (np.asarray(gt, np.float64) - np.asarray(generated, np.float64)) ** 2
    if mask is not None:
        m = np.asarray(mask) > 0
        if not m.any():
            return float("nan")
        mse = diff[m].mean()
    else:
        mse = diff.mean()
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-12)))


def ssim(gt: np.ndarray, generated: np.ndarray) -> float:
    """scikit-image SSIM with the released settings: defaults (7x7 uniform window, K1 0.01, K2 0.03), uint8 (data
    range 255), averaged over the RGB channels."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(np.asarray(gt, np.uint8), np.asarray(generated, np.uint8), channel_axis=2))


def silhouette(image: np.ndarray) -> np.ndarray:
    """Foreground of an image on white: not every channel above the release's threshold."""
    return ~(np.asarray(image) > WHITE_THRESHOLD).all(-1)


def silhouette_iou(gt_mask: np.ndarray, generated: np.ndarray) -> float:
    """IoU of the ground-truth mask and the generated image's silhouette (1.0 when both are empty)."""
    a, b = np.asarray(gt_mask) > 0, silhouette(generated)
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0
