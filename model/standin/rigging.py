"""Helpers shared by the synthetic body models: joint regressors and landmark embeddings on a mesh."""
from __future__ import annotations

import numpy as np


def regressor_for(vertices: np.ndarray, targets: np.ndarray, k: int = 40) -> np.ndarray:
    """A (J, V) joint regressor whose rows sum to one and reproduce `targets` exactly on `vertices`.

    Each row uses the k nearest vertices; weights are the minimum-norm correction of uniform weights satisfying
    sum(w) = 1 and sum(w v) = target, so joints follow identity changes of the surrounding surface.
    """
    reg = np.zeros((len(targets), len(vertices)))
    for j, t in enumerate(targets):
        idx = np.argsort(np.linalg.norm(vertices - t, axis=1))[:k]
        a = np.vstack([np.ones(k), vertices[idx].T])
        b = np.concatenate([[1.0], t])
        w0 = np.full(k, 1.0 / k)
        reg[j, idx] = w0 + a.T @ np.linalg.solve(a @ a.T, b - a @ w0)
    return reg


def embed_points(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Face index and barycentric coordinates of the closest surface point to each of `points`."""
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(np.ascontiguousarray(vertices, np.float32)),
                        o3d.core.Tensor(np.ascontiguousarray(faces, np.uint32)))
    ans = scene.compute_closest_points(o3d.core.Tensor(np.ascontiguousarray(points, np.float32)))
    uv = ans["primitive_uvs"].numpy().astype(np.float64)  # barycentrics of the face's vertices 1 and 2
    bary = np.clip(np.stack([1 - uv[:, 0] - uv[:, 1], uv[:, 0], uv[:, 1]], -1), 0.0, 1.0)
    return ans["primitive_ids"].numpy().astype(np.int64), bary / bary.sum(1, keepdims=True)
