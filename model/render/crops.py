"""The released square crop anchored to the silhouette, and the resize that updates the intrinsics (spec §1.2)."""
from __future__ import annotations

import numpy as np

PAD_V, PAD_H = 0.01, 0.05


def silhouette_crop(mask: np.ndarray, camera_x: float, pad_v: float = PAD_V, pad_h: float = PAD_H
                    ) -> tuple[int, int, int]:
    """(top, left, size) of the square crop: top edge = silhouette top - pad; horizontally anchored to the
    silhouette edge on the camera's side (camera centre x < 0: right edge, else left edge); always inside the image."""
    h, w = mask.shape
    size = min(h, w)
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        raise ValueError("empty silhouette: the mesh does not project into this view")
    pv, ph = int(pad_v * size), int(pad_h * size)
    top = max(int(ys.min()) - pv, 0)
    bottom = min(top + size, h)
    top = bottom - size
    if camera_x < 0:
        right = min(int(xs.max()) + ph, w)
        left = max(right - size, 0)
    else:
        left = max(int(xs.min()) - ph, 0)
        left = min(left, w - size)
    return top, left, size


def crop_and_resize(image: np.ndarray, mask: np.ndarray, k: np.ndarray, top: int, left: int, size: int,
                    out: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crop both, resize (RGB: area; mask: nearest), and return the matching intrinsics."""
    import cv2

    rgb = cv2.resize(image[top:top + size, left:left + size], (out, out), interpolation=cv2.INTER_AREA)
    m = cv2.resize(mask[top:top + size, left:left + size].astype(np.uint8), (out, out),
                   interpolation=cv2.INTER_NEAREST)
    k2 = np.array(k, np.float64)
    k2[0, 2] -= left
    k2[1, 2] -= top
    k2[:2] *= out / size
    return rgb, m, k2
