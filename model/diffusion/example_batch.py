"""A random but geometrically valid batch (spec §2.3 keys) for smoke tests and benchmarks: a blob of vertices
around the origin and 16 cameras on an arc at distance 4 looking at it."""
from __future__ import annotations

import numpy as np
import torch

from model.diffusion.config import ModelConfig
from model.geometry.voxels import voxelize
from model.render.cameras import look_at


def example_batch(cfg: ModelConfig, b: int = 2, seed: int = 0, n_vertices: int = 300) -> dict[str, torch.Tensor]:
    g = np.random.default_rng(seed)
    n, s = cfg.view_num, cfg.image_size
    verts = g.normal(size=(n_vertices, 3)) * [0.12, 0.16, 0.12]
    vox = voxelize(verts)
    ks, rts = [], []
    for a in np.linspace(-1.4, 1.4, n):
        rts.append(look_at(np.array([4 * np.sin(a), 0.2, 4 * np.cos(a)]), np.zeros(3)))
        k = np.eye(4)
        k[:3, :3] = [[s * 6, 0, s / 2], [0, s * 6, s / 2], [0, 0, 1]]
        ks.append(k)

    def rep(x: np.ndarray, dt: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.tensor(np.stack([x] * b), dtype=dt)

    return {"target_image": torch.tensor(g.uniform(-1, 1, (b, n, s, s, 3)), dtype=torch.float32),
            "input_image": torch.tensor(g.uniform(-1, 1, (b, s, s, 3)), dtype=torch.float32),
            "target_K": rep(np.stack(ks)), "target_RT": rep(np.stack(rts)), "vertices": rep(verts),
            "coord": rep(vox.coord, torch.int32), "out_sh": rep(vox.out_sh, torch.int32), "bounds": rep(vox.bounds)}
