"""Voxelisation of model-frame mesh vertices for the SparseConvNet (spec §2.4), identical for data and inference."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VOXEL_SIZE = 0.005
OUT_SHAPE_MULTIPLE = 4


@dataclass(frozen=True)
class VoxelGrid:
    coord: np.ndarray  # (Nv, 3) int32 voxel index per vertex, (z, y, x) order
    out_sh: np.ndarray  # (3,) int32 sparse-grid shape (D, H, W), a multiple of 4
    bounds: np.ndarray  # (2, 3) float32 [min_xyz; max_xyz]


def voxelize(vertices: np.ndarray, voxel_size: float = VOXEL_SIZE) -> VoxelGrid:
    """coord = round((zyx - min_zyx) / voxel); out_sh = smallest multiple of 4 strictly above ceil(extent / voxel).

    `(out_sh | 3) + 1` is the release's padding rule; keeping it (not "next multiple >= extent") keeps the sparse
    grid the exact shape the checkpoints saw.
    """
    v = np.asarray(vertices, np.float64)
    lo, hi = v.min(0), v.max(0)
    dhw = v[:, [2, 1, 0]]
    coord = np.round((dhw - lo[[2, 1, 0]]) / voxel_size).astype(np.int32)
    out_sh = np.ceil((hi - lo)[[2, 1, 0]] / voxel_size).astype(np.int32)
    out_sh = (out_sh | 3) + 1
    return VoxelGrid(coord, out_sh.astype(np.int32), np.stack([lo, hi]).astype(np.float32))
