"""Small geometric helpers shared by the fitters: similarity estimation and point-to-surface queries."""
from __future__ import annotations

import numpy as np


def umeyama(src: np.ndarray, dst: np.ndarray, with_scale: bool = True) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity dst ~ s R src + t (Umeyama 1991; rigid when `with_scale` is False)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    cov = xd.T @ xs / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[2] = -1
    rot = u @ np.diag(d) @ vt
    scale = float((sig * d).sum() / xs.var(0).sum()) if with_scale else 1.0
    return scale, rot, mu_d - scale * rot @ mu_s


class SurfaceQuery:
    """Closest points, normals and distances on a fixed triangle mesh (open3d's BVH)."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray) -> None:
        import open3d as o3d

        self._o3d = o3d
        self.scene = o3d.t.geometry.RaycastingScene()
        self.scene.add_triangles(o3d.core.Tensor(np.ascontiguousarray(vertices, np.float32)),
                                 o3d.core.Tensor(np.ascontiguousarray(faces, np.uint32)))

    def closest(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Closest surface points and the unit normals of their triangles."""
        ans = self.scene.compute_closest_points(self._o3d.core.Tensor(np.ascontiguousarray(points, np.float32)))
        return ans["points"].numpy().astype(np.float64), ans["primitive_normals"].numpy().astype(np.float64)

    def distance(self, points: np.ndarray) -> np.ndarray:
        return self.scene.compute_distance(
            self._o3d.core.Tensor(np.ascontiguousarray(points, np.float32))).numpy().astype(np.float64)


def surface_error_mm(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray, units_per_mm: float) -> dict:
    """Mean and 95th percentile distance (mm) from `points` to the mesh surface."""
    d = SurfaceQuery(vertices, faces).distance(points) / units_per_mm
    return {"mean_mm": float(d.mean()), "p95_mm": float(np.percentile(d, 95)), "max_mm": float(d.max())}


def rigid_icp(source: np.ndarray, target: SurfaceQuery, iters: int = 15, trim: float = np.inf
              ) -> tuple[np.ndarray, np.ndarray]:
    """Rigid (rotation, translation) moving `source` points onto the `target` surface by iterative closest points.

    Correspondences farther than `trim` are ignored. Returns (R, t) with aligned = source @ R.T + t.
    """
    rot, t = np.eye(3), np.zeros(3)
    for _ in range(iters):
        moved = source @ rot.T + t
        closest, _ = target.closest(moved)
        keep = np.linalg.norm(closest - moved, axis=1) < trim
        if keep.sum() < 3:
            break
        _, r_step, t_step = umeyama(moved[keep], closest[keep], with_scale=False)
        rot, t = r_step @ rot, r_step @ t + t_step
    return rot, t
