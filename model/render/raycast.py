"""Ray casting of triangle meshes with open3d's RaycastingScene (fast on CPU, no GPU or display needed).

open3d (Embree) finds which triangle each ray hits, in float32 with CPU-specific kernels; the hit's distance,
barycentrics and point are then recomputed in float64 from that triangle (`model.portable_math`), so they do not
depend on the CPU's instruction set. What remains kernel-dependent is only which of two triangles a ray passing
within float32 rounding of their shared edge is said to hit (the interpolated values agree there), and whether a
ray grazing the silhouette within that rounding hits at all.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from model import portable_math as pm
from model.render.cameras import pixel_rays, pixel_rays_at

INVALID_ID = 4294967295  # open3d's primitive id for a miss


@dataclass(frozen=True)
class RayHits:
    """Per-pixel results of the rays cast in `roi` = (x0, y0, x1, y1) of an image of `shape` (H, W).

    Kept compactly: the region's hit mask and ray directions, and every other quantity for the hit rays only. At
    FaceScape's image sizes, full-image float copies of points, barycentrics and directions cost more than the rays
    (300 MB per 4.3 MP view). The full-image properties build them on first use; `at_hits` reads values at the hit
    pixels without them. Misses: mask False, t = inf, depth 0, face -1, zeros elsewhere."""

    roi: tuple[int, int, int, int]
    shape: tuple[int, int]
    roi_mask: np.ndarray  # (h_roi, w_roi) bool
    roi_dirs: np.ndarray  # (h_roi, w_roi, 3) unit ray directions
    hit_values: dict  # name -> (n_hits[, C]) in row-major order: t, depth, face, bary, points

    _FILL = {"t": np.inf, "depth": 0.0, "face": -1, "bary": 0.0, "points": 0.0}

    def full(self, name: str) -> np.ndarray:
        x0, y0, x1, y1 = self.roi
        if name == "mask":
            out = np.zeros(self.shape, bool)
            out[y0:y1, x0:x1] = self.roi_mask
            return out
        if name == "view_dirs":
            out = np.zeros(self.shape + (3,))
            out[y0:y1, x0:x1] = self.roi_dirs
            return out
        values = self.hit_values[name]
        out = np.full(self.shape + values.shape[1:], self._FILL[name], values.dtype)
        region = out[y0:y1, x0:x1]
        region[self.roi_mask] = values
        return out

    def at_hits(self, name: str) -> np.ndarray:
        """`name` at the hit pixels, in row-major order of the full image (the region is a rectangle, so its
        row-major order restricted to hits is the image's)."""
        return self.roi_dirs[self.roi_mask] if name == "view_dirs" else self.hit_values[name]

    @cached_property
    def mask(self) -> np.ndarray:  # (H, W) bool
        return self.full("mask")

    @cached_property
    def t(self) -> np.ndarray:  # (H, W) ray parameter (distance along the unit ray)
        return self.full("t")

    @cached_property
    def depth(self) -> np.ndarray:  # (H, W) camera z of the hit (0 where missed)
        return self.full("depth")

    @cached_property
    def face(self) -> np.ndarray:  # (H, W) int64
        return self.full("face")

    @cached_property
    def bary(self) -> np.ndarray:  # (H, W, 3) barycentric coordinates of the hit in its face
        return self.full("bary")

    @cached_property
    def points(self) -> np.ndarray:  # (H, W, 3) world-space hit points
        return self.full("points")

    @cached_property
    def view_dirs(self) -> np.ndarray:  # (H, W, 3) unit ray directions (zero outside the region rays were cast in)
        return self.full("view_dirs")


class MeshRaycaster:
    """One mesh's ray-casting scene, cast from many cameras: the BVH is built once per mesh, not once per view (at
    real scan sizes the build costs as much as a view's rays)."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray) -> None:
        import open3d as o3d

        self.vertices, self.faces = np.asarray(vertices), np.asarray(faces)
        self.scene = o3d.t.geometry.RaycastingScene()
        self.scene.add_triangles(o3d.core.Tensor(np.ascontiguousarray(vertices, np.float32)),
                                 o3d.core.Tensor(np.ascontiguousarray(faces, np.uint32)))
        # Open3D builds the BVH at the first cast; build it here, so that casts from several threads (the views
        # of an expression run side by side) never race on that lazy commit
        self.scene.cast_rays(o3d.core.Tensor(np.array([[0, 0, 0, 0, 0, 1]], np.float32)))

    def cast(self, k: np.ndarray, rt: np.ndarray, width: int, height: int,
             distortion: np.ndarray | None = None) -> RayHits:
        """One ray per pixel centre of a (possibly distorted) OpenCV camera, in the mesh's image region only."""
        roi = mesh_roi(self.vertices, k, rt, width, height, distortion)
        origins, dirs = pixel_rays(k, rt, width, height, distortion, roi)
        return self._hits(origins, dirs, rt, roi, (height, width))

    def cast_orthographic(self, rt: np.ndarray, size: int, ortho_scale: float | None = None) -> RayHits:
        """One parallel ray per pixel centre of a square orthographic camera (the THuman views': NDC
        ((u + 0.5) / size * 2 - 1) x ortho_scale / 2 in camera x, likewise y), over the whole image."""
        from model.render.orthographic import ORTHO_SCALE, ortho_rays

        origins, dirs = ortho_rays(np.asarray(rt, np.float64), size, ORTHO_SCALE if ortho_scale is None else ortho_scale)
        return self._hits(origins, np.ascontiguousarray(dirs), rt, (0, 0, size, size), (size, size))

    def _hits(self, origins: np.ndarray, dirs: np.ndarray, rt: np.ndarray, roi: tuple[int, int, int, int],
              shape: tuple[int, int]) -> RayHits:
        import open3d as o3d

        vertices, faces = self.vertices, self.faces
        x0, y0, x1, y1 = roi
        height, width = shape
        rays = np.empty((len(dirs), 6), np.float32)
        rays[:, :3], rays[:, 3:] = origins, dirs
        ans = self.scene.cast_rays(o3d.core.Tensor(rays))
        ids = ans["primitive_ids"].numpy()
        hit = ids != INVALID_ID
        at = np.flatnonzero(hit)  # (everything below is computed for the hit rays only)
        face = ids[at].astype(np.int64)
        tri = np.asarray(vertices, np.float64)[faces[face]]
        t, bary = pm.ray_triangle_hits(origins[at], dirs[at], tri)
        points = np.einsum("nk,nkc->nc", bary, tri)
        depth = pm.transform_points(points, rt[:3, :3], rt[:3, 3])[:, 2]
        h, w = y1 - y0, x1 - x0
        return RayHits(roi, (height, width), hit.reshape(h, w), dirs.reshape(h, w, 3),
                       {"t": t, "depth": depth, "face": face, "bary": bary, "points": points})

    def hits_at(self, k: np.ndarray, rt: np.ndarray, u: np.ndarray, v: np.ndarray,
                distortion: np.ndarray | None = None) -> np.ndarray:
        """Whether the rays through pixel centres (u, v) hit the mesh, (N,) bool: what `cast` says of those pixels
        (the same ray bits against the same scene), for a view of which only some pixels are read."""
        import open3d as o3d

        if len(u) == 0:
            return np.zeros(0, bool)
        origins, dirs = pixel_rays_at(k, rt, u, v, distortion)
        rays = np.empty((len(dirs), 6), np.float32)
        rays[:, :3], rays[:, 3:] = origins, dirs
        return self.scene.cast_rays(o3d.core.Tensor(rays))["primitive_ids"].numpy() != INVALID_ID


def raycast_mesh(vertices: np.ndarray, faces: np.ndarray, k: np.ndarray, rt: np.ndarray, width: int, height: int,
                 distortion: np.ndarray | None = None) -> RayHits:
    """Cast one ray per pixel centre of a (possibly distorted) OpenCV camera against a mesh (one camera; for many
    cameras of one mesh, `MeshRaycaster`)."""
    return MeshRaycaster(vertices, faces).cast(k, rt, width, height, distortion)


def mesh_roi(vertices: np.ndarray, k: np.ndarray, rt: np.ndarray, width: int, height: int,
             distortion: np.ndarray | None = None, margin: int = 3) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): pixels that can see the mesh, from its vertices' (distorted) projections plus a margin;
    the whole image when a vertex lies behind the camera. Rays outside miss, so casting only these is exact."""
    cam = pm.transform_points(vertices, rt[:3, :3], rt[:3, 3]) if len(vertices) else np.zeros((0, 3))
    if len(vertices) == 0 or (cam[:, 2] <= 1e-9).any():
        return 0, 0, width, height
    if distortion is not None and np.any(distortion):
        import cv2

        pix = cv2.projectPoints(cam.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), np.asarray(k, np.float64)[:3, :3],
                                np.asarray(distortion, np.float64))[0].reshape(-1, 2)
    else:
        uvw = pm.transform_points(cam, np.asarray(k, np.float64)[:3, :3])
        pix = uvw[:, :2] / uvw[:, 2:3]
    lo, hi = np.floor(pix.min(0)) - margin, np.ceil(pix.max(0)) + margin + 1
    x0, y0 = int(np.clip(lo[0], 0, width)), int(np.clip(lo[1], 0, height))
    x1, y1 = int(np.clip(hi[0], x0, width)), int(np.clip(hi[1], y0, height))
    return x0, y0, x1, y1


def interpolate(hits: RayHits, faces: np.ndarray, attribute: np.ndarray) -> np.ndarray:
    """Interpolate a per-vertex attribute (V, C) at every hit with its barycentrics; zeros where missed."""
    safe = np.where(hits.face >= 0, hits.face, 0)
    vals = attribute[faces[safe]]  # (H, W, 3, C)
    out = np.einsum("hwk,hwkc->hwc", hits.bary, vals)
    out[~hits.mask] = 0.0
    return out


def interpolate_at_hits(hits: RayHits, faces: np.ndarray, attribute: np.ndarray) -> np.ndarray:
    """Like `interpolate` but only for the hit pixels, in row-major order of `hits.mask`: (n_hits, C)."""
    return np.einsum("nk,nkc->nc", hits.at_hits("bary"), attribute[faces[hits.at_hits("face")]])
