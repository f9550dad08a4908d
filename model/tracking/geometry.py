"""Small geometric helpers shared by the fitters: similarity estimation and point-to-surface queries."""
from __future__ import annotations

import numpy as np


def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity dst ~ s R src + t (Umeyama 1991); returns (s, R, t)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    cov = xd.T @ xs / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[2] = -1
    rot = u @ np.diag(d) @ vt
    scale = float((sig * d).sum() / xs.var(0).sum())
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
