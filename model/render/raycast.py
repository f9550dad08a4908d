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
    view_dirs: np.ndarray  # (H, W, 3) unit ray directions


def raycast_mesh(vertices: np.ndarray, faces: np.ndarray, k: np.ndarray, rt: np.ndarray, width: int, height: int,
                 distortion: np.ndarray | None = None) -> RayHits:
    """Cast one ray per pixel centre of a (possibly distorted) OpenCV camera against a mesh."""
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(np.ascontiguousarray(vertices, np.float32)),
                        o3d.core.Tensor(np.ascontiguousarray(faces, np.uint32)))
    origins, dirs = pixel_rays(k, rt, width, height, distortion)
    rays = o3d.core.Tensor(np.concatenate([origins, dirs], 1).astype(np.float32))
    ans = scene.cast_rays(rays)
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
    shape = (height, width)
    return RayHits(
        mask=hit.reshape(shape), t=np.where(hit, t, np.inf).reshape(shape),
        depth=np.where(hit, cam_z, 0.0).reshape(shape), face=face.reshape(shape),
        bary=np.where(hit[:, None], bary, 0.0).reshape(*shape, 3), points=points.reshape(*shape, 3),
        view_dirs=dirs.reshape(*shape, 3),
    )


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
