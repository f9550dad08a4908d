"""The released square crop anchored to the silhouette, the undistortion of that crop alone, and the resize that
updates the intrinsics (spec §1.2), with the pixels its nearest-neighbour variant reads."""
from __future__ import annotations

import numpy as np

PAD_V, PAD_H = 0.01, 0.05


def silhouette_crop(mask: np.ndarray, camera_x: float, pad_v: float = PAD_V, pad_h: float = PAD_H
                    ) -> tuple[int, int, int]:
    """(top, left, size) of the square crop: top edge = silhouette top - pad; horizontally anchored to the
    silhouette edge on the camera's side (camera centre x < 0: right edge, else left edge); always inside the image."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        raise ValueError("empty silhouette: the mesh does not project into this view")
    side = int(xs.max()) if camera_x < 0 else int(xs.min())
    return crop_window(mask.shape, int(ys.min()), side, camera_x, pad_v, pad_h)


def crop_window(shape: tuple[int, int], top_row: int, side_column: int, camera_x: float, pad_v: float = PAD_V,
                pad_h: float = PAD_H) -> tuple[int, int, int]:
    """`silhouette_crop` from the two extremes it reads: the silhouette's top row and its extreme column on the
    camera's side (rightmost when camera_x < 0, else leftmost)."""
    h, w = shape
    size = min(h, w)
    pv, ph = int(pad_v * size), int(pad_h * size)
    top = max(top_row - pv, 0)
    bottom = min(top + size, h)
    top = bottom - size
    if camera_x < 0:
        right = min(side_column + ph, w)
        left = max(right - size, 0)
    else:
        left = max(side_column - ph, 0)
        left = min(left, w - size)
    return top, left, size


def nearest_indices(size: int, out: int) -> np.ndarray:
    """The source rows (or columns) that cv2.resize(INTER_NEAREST) reads when resizing `size` to `out`:
    floor(i / (out / size)), clamped (OpenCV's resizeNN, double precision)."""
    step = 1.0 / (out / size)
    return np.minimum(np.floor(np.arange(out) * step).astype(np.int64), size - 1)


def undistorted_crop(image: np.ndarray, k: np.ndarray, distortion: np.ndarray, top: int, left: int, size: int
                     ) -> np.ndarray:
    """cv2.undistort(image, k, distortion)[top:top + size, left:left + size], computing only those pixels: the
    undistortion map of the crop alone (the full image's camera with its principal point moved to the crop) and
    the bilinear remap cv2.undistort itself runs (fixed-point map, zero border). Equal bytes on every view checked
    (tests/model/test_raycast.py), at a third of the work for a 4.3 MP view."""
    import cv2

    moved = np.array(k, np.float64)
    moved[0, 2] -= left
    moved[1, 2] -= top
    map1, map2 = cv2.initUndistortRectifyMap(np.asarray(k, np.float64), np.asarray(distortion, np.float64), None,
                                             moved, (size, size), cv2.CV_16SC2)
    return cv2.remap(image, map1, map2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def resize_rgb(image: np.ndarray, k: np.ndarray, top: int, left: int, size: int, out: int = 256
               ) -> tuple[np.ndarray, np.ndarray]:
    """The crop of `image` (which may already be just that crop: top = left = 0 within it) resized by area, and
    the intrinsics `k` of the full image moved to the crop and scaled."""
    import cv2

    rgb = cv2.resize(image, (out, out), interpolation=cv2.INTER_AREA)
    k2 = np.array(k, np.float64)
    k2[0, 2] -= left
    k2[1, 2] -= top
    k2[:2] *= out / size
    return rgb, k2


def crop_and_resize(image: np.ndarray, mask: np.ndarray, k: np.ndarray, top: int, left: int, size: int,
                    out: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crop both, resize (RGB: area; mask: nearest), and return the matching intrinsics."""
    import cv2

    rgb, k2 = resize_rgb(image[top:top + size, left:left + size], k, top, left, size, out)
    m = cv2.resize(mask[top:top + size, left:left + size].astype(np.uint8), (out, out),
                   interpolation=cv2.INTER_NEAREST)
    return rgb, m, k2
