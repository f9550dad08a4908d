"""The released crop and its resized silhouette from the rays they read, not from a full-resolution mask.

`silhouette_crop` needs two numbers of a view's mask (its top row and its extreme column on the camera's side) and
the nearest-neighbour resize of the cropped mask reads out x out of its pixels. At FaceScape's 4.3 MP a full mask is
~10^6 rays per view; these are ~10^5: bands of rows from the top of the mesh's image region down to the first hit,
bands of columns from the camera's side inwards to the first hit, and the resize's sample grid. A ray is the same
bits however it is batched (`MeshRaycaster.hits_at`), so the crop and the mask equal those of the full cast
(tests/model/test_raycast.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.render.crops import crop_window, nearest_indices
from model.render.raycast import MeshRaycaster, mesh_roi

BAND = 16  # rows or columns cast per step of the search for an extreme


@dataclass(frozen=True)
class CropSilhouette:
    top: int
    left: int
    size: int
    mask: np.ndarray  # (out, out) uint8 0/1: cv2.resize(full mask crop, INTER_NEAREST)
    rays: int  # rays cast


def _first_hit(caster: MeshRaycaster, k, rt, lines: range, span: tuple[int, int], rows: bool) -> tuple[int | None, int]:
    """The first line (row if `rows`, else column) in `lines` order with a hit among `span` of the other axis."""
    cast = 0
    lines = list(lines)
    other = np.arange(*span)
    for i in range(0, len(lines), BAND):
        band = np.asarray(lines[i:i + BAND])
        a, b = np.meshgrid(band, other, indexing="ij")  # one line after another, each across the span
        u, v = (b, a) if rows else (a, b)
        hit = caster.hits_at(k, rt, u.ravel().astype(np.float64), v.ravel().astype(np.float64))
        cast += hit.size
        per_line = hit.reshape(len(band), len(other)).any(1)
        if per_line.any():
            return int(band[per_line.argmax()]), cast
    return None, cast


def crop_silhouette(caster: MeshRaycaster, k: np.ndarray, rt: np.ndarray, width: int, height: int,
                    camera_x: float, out: int) -> CropSilhouette | None:
    """The crop (top, left, size) and resized mask of an undistorted view, or None when the mesh is not seen."""
    x0, y0, x1, y1 = mesh_roi(caster.vertices, k, rt, width, height)
    if x1 <= x0 or y1 <= y0:
        return None
    top_row, rays = _first_hit(caster, k, rt, range(y0, y1), (x0, x1), rows=True)
    if top_row is None:
        return None
    columns = range(x1 - 1, x0 - 1, -1) if camera_x < 0 else range(x0, x1)
    side, more = _first_hit(caster, k, rt, columns, (top_row, y1), rows=False)
    rays += more
    top, left, size = crop_window((height, width), top_row, side, camera_x)
    rows, cols = top + nearest_indices(size, out), left + nearest_indices(size, out)
    inside_r, inside_c = (rows >= y0) & (rows < y1), (cols >= x0) & (cols < x1)  # outside the region: misses
    v, u = np.meshgrid(rows[inside_r], cols[inside_c], indexing="ij")
    mask = np.zeros((out, out), np.uint8)
    hit = caster.hits_at(k, rt, u.ravel().astype(np.float64), v.ravel().astype(np.float64))
    mask[np.ix_(inside_r, inside_c)] = hit.reshape(v.shape)
    return CropSilhouette(top, left, size, mask, rays + hit.size)
