"""Helpers shared by the synthetic body models: joint regressors and landmark embeddings on a mesh."""
from __future__ import annotations

import numpy as np

from model import portable_math as pm


def regressor_for(vertices: np.ndarray, targets: np.ndarray, k: int = 40) -> np.ndarray:
    """A (J, V) joint regressor whose rows sum to one and reproduce `targets` exactly on `vertices`.

    Each row uses the k nearest vertices; weights are the minimum-norm correction of uniform weights satisfying
    sum(w) = 1 and sum(w v) = target, so joints follow identity changes of the surrounding surface.
    """
    reg = np.zeros((len(targets), len(vertices)))
    for j, t in enumerate(targets):
        idx = np.argsort(pm.norm(vertices - t, axis=1), kind="stable")[:k]
        a = np.vstack([np.ones(k), vertices[idx].T])
        b = np.concatenate([[1.0], t])
        w0 = np.full(k, 1.0 / k)
        reg[j, idx] = w0 + pm.matmul(a.T, pm.solve(pm.matmul(a, a.T), b - pm.matmul(a, w0)))
    return reg


def embed_points(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Face index and barycentric coordinates of the closest surface point to each of `points` (an exact float64
    search, the same bits on every CPU)."""
    face, bary = pm.closest_points_on_mesh(vertices, faces, points)
    bary = np.clip(bary, 0.0, 1.0)
    return face, bary / bary.sum(1, keepdims=True)
