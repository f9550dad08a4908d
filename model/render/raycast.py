"""Ray casting of triangle meshes with open3d's RaycastingScene (fast on CPU, no GPU or display needed)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.render.cameras import pixel_rays

INVALID_ID = 4294967295  # open3d's primitive id for a miss


@dataclass(frozen=True)
class RayHits:
    """Per-pixel results, each (H, W, ...); misses have mask False, t = inf, face = -1."""

    mask: np.ndarray  # (H, W) bool
    t: np.ndarray  # (H, W) ray parameter (distance along the unit ray)
    depth: np.ndarray  # (H, W) camera z of the hit (0 where missed)
    face: np.ndarray  # (H, W) int64
    bary: np.ndarray  # (H, W, 3) barycentric coordinates of the hit in its face
    points: np.ndarray  # (H, W, 3) world-space hit points
    view_dirs: np.ndarray  # (H, W, 3) unit ray directions (zero outside the region rays were cast in)


class MeshRaycaster:
    """One mesh's ray-casting scene, cast from many cameras: the BVH is built once per mesh, not once per view (at
    real scan sizes the build costs as much as a view's rays)."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray) -> None:
        import open3d as o3d

        self.vertices, self.faces = np.asarray(vertices), np.asarray(faces)
        self.scene = o3d.t.geometry.RaycastingScene()
        self.scene.add_triangles(o3d.core.Tensor(np.ascontiguousarray(vertices, np.float32)),
                                 o3d.core.Tensor(np.ascontiguousarray(faces, np.uint32)))

    def cast(self, k: np.ndarray, rt: np.ndarray, width: int, height: int,
             distortion: np.ndarray | None = None) -> RayHits:
        """One ray per pixel centre of a (possibly distorted) OpenCV camera, in the mesh's image region only."""
        import open3d as o3d

        vertices, faces = self.vertices, self.faces
        roi = mesh_roi(vertices, k, rt, width, height, distortion)
        x0, y0, x1, y1 = roi
        origins, dirs = pixel_rays(k, rt, width, height, distortion, roi)
        rays = o3d.core.Tensor(np.concatenate([origins, dirs], 1).astype(np.float32))
        ans = self.scene.cast_rays(rays)
        ids = ans["primitive_ids"].numpy().astype(np.int64)
        hit = ids != INVALID_ID
        t = ans["t_hit"].numpy().astype(np.float64)
        uv = ans["primitive_uvs"].numpy().astype(np.float64)  # barycentrics of vertices 1 and 2
        bary = np.stack([1 - uv[:, 0] - uv[:, 1], uv[:, 0], uv[:, 1]], -1)
        face = np.where(hit, ids, -1)
        safe = np.where(hit, ids, 0)
        tri = vertices[faces[safe]]  # (N, 3, 3)
        points = np.einsum("nk,nkc->nc", bary, tri)
        points[~hit] = 0.0
        cam_z = (points @ rt[:3, :3].T + rt[:3, 3])[:, 2]
        shape = (y1 - y0, x1 - x0)

        def full(part: np.ndarray, fill, channels: int = 0) -> np.ndarray:  # the ROI's values in the whole image
            out = np.full((height, width, channels) if channels else (height, width), fill, part.dtype)
            out[y0:y1, x0:x1] = part.reshape(*shape, channels) if channels else part.reshape(shape)
            return out

        return RayHits(
            mask=full(hit, False), t=full(np.where(hit, t, np.inf), np.inf),
            depth=full(np.where(hit, cam_z, 0.0), 0.0), face=full(face, -1),
            bary=full(np.where(hit[:, None], bary, 0.0), 0.0, 3), points=full(points, 0.0, 3),
            view_dirs=full(dirs, 0.0, 3),
        )


def raycast_mesh(vertices: np.ndarray, faces: np.ndarray, k: np.ndarray, rt: np.ndarray, width: int, height: int,
                 distortion: np.ndarray | None = None) -> RayHits:
    """Cast one ray per pixel centre of a (possibly distorted) OpenCV camera against a mesh (one camera; for many
    cameras of one mesh, `MeshRaycaster`)."""
    return MeshRaycaster(vertices, faces).cast(k, rt, width, height, distortion)


def mesh_roi(vertices: np.ndarray, k: np.ndarray, rt: np.ndarray, width: int, height: int,
             distortion: np.ndarray | None = None, margin: int = 3) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): pixels that can see the mesh, from its vertices' (distorted) projections plus a margin;
    the whole image when a vertex lies behind the camera. Rays outside miss, so casting only these is exact."""
    cam = vertices @ rt[:3, :3].T + rt[:3, 3]
    if len(vertices) == 0 or (cam[:, 2] <= 1e-9).any():
        return 0, 0, width, height
    if distortion is not None and np.any(distortion):
        import cv2

        pix = cv2.projectPoints(cam.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), np.asarray(k, np.float64)[:3, :3],
                                np.asarray(distortion, np.float64))[0].reshape(-1, 2)
    else:
        uvw = cam @ np.asarray(k, np.float64)[:3, :3].T
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
    face = hits.face[hits.mask]
    return np.einsum("nk,nkc->nc", hits.bary[hits.mask], attribute[faces[face]])
