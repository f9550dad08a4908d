"""Submanifold and strided sparse 3D convolutions in plain torch, with spconv's weight layout [out, kD, kH, kW, in].

Why not spconv on CPU: its CPU wheel is silently wrong with more than one thread and its backward needs CUDA
(see reference/dependencies.md). Here every active voxel gathers its 27 neighbours through a dense index volume
(D x H x W int64; a few MB for a face) and multiplies them with the matching weight slice: exact, deterministic,
differentiable on CPU and GPU. Duplicate voxel indices (several vertices in one voxel, spec §8 item 19) are merged
first by averaging their features — a defined behaviour where the release left it to spconv's hashing.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

_OFFSETS = torch.stack(torch.meshgrid(*(torch.arange(3),) * 3, indexing="ij"), -1).reshape(27, 3)


@dataclass
class SparseVolume:
    features: torch.Tensor  # (N, C)
    indices: torch.Tensor  # (N, 3) long, (z, y, x)
    shape: tuple[int, int, int]  # (D, H, W)

    @staticmethod
    def from_points(features: torch.Tensor, indices: torch.Tensor, shape) -> "SparseVolume":
        """Merge duplicate voxels by averaging their features."""
        idx = indices.long()
        d, h, w = (int(s) for s in shape)
        flat = (idx[:, 0] * h + idx[:, 1]) * w + idx[:, 2]
        uniq, inverse = torch.unique(flat, return_inverse=True)
        summed = torch.zeros(len(uniq), features.shape[1], dtype=features.dtype, device=features.device)
        summed.index_add_(0, inverse, features)
        counts = torch.zeros(len(uniq), dtype=features.dtype, device=features.device)
        counts.index_add_(0, inverse, torch.ones_like(flat, dtype=features.dtype))
        z = uniq // (h * w)
        y = (uniq // w) % h
        x = uniq % w
        return SparseVolume(summed / counts[:, None], torch.stack([z, y, x], -1), (d, h, w))

    def dense(self) -> torch.Tensor:
        """(C, D, H, W) with zeros at inactive voxels."""
        d, h, w = self.shape
        out = torch.zeros(self.features.shape[1], d, h, w, dtype=self.features.dtype, device=self.features.device)
        out[:, self.indices[:, 0], self.indices[:, 1], self.indices[:, 2]] = self.features.t()
        return out


def _lookup(indices: torch.Tensor, shape) -> torch.Tensor:
    d, h, w = shape
    table = torch.full((d + 2, h + 2, w + 2), -1, dtype=torch.long, device=indices.device)  # 1-voxel border
    table[indices[:, 0] + 1, indices[:, 1] + 1, indices[:, 2] + 1] = torch.arange(len(indices), device=indices.device)
    return table


class SparseConv3d(nn.Module):
    """3x3x3 sparse convolution, no bias. `subm=True`: outputs at the input's active sites (SubMConv3d);
    else stride-2 / padding-1 downsampling whose outputs are every site reached by an active input."""

    def __init__(self, cin: int, cout: int, subm: bool = True, stride: int = 1) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(cout, 3, 3, 3, cin))
        nn.init.kaiming_uniform_(self.weight.view(cout, -1).t().reshape(27 * cin, cout).t(), a=5 ** 0.5)
        self.subm, self.stride = subm, stride

    def forward(self, x: SparseVolume) -> SparseVolume:
        offsets = _OFFSETS.to(x.indices.device)
        if self.subm:
            out_idx, shape = x.indices, x.shape
            table = _lookup(x.indices, x.shape)
            # neighbour of output o for kernel tap k is o + k - 1 (+1 border in the table)
            nbr = table[(out_idx[:, None, :] + offsets[None]).unbind(-1)]
        else:
            s = self.stride
            shape = tuple((n + 2 - 3) // s + 1 for n in x.shape)
            cand = x.indices[:, None, :] + 1 - offsets[None]  # o * s = i + pad - k
            ok = (cand % s == 0).all(-1)
            cand = torch.div(cand, s, rounding_mode="floor")
            ok &= ((cand >= 0) & (cand < torch.tensor(shape, device=cand.device))).all(-1)
            hits = cand[ok]  # unique sites through 1-D keys: same (z, y, x) order as unique(dim=0), far faster
            _, h, w = shape
            keys = torch.unique((hits[:, 0] * h + hits[:, 1]) * w + hits[:, 2])
            out_idx = torch.stack([keys // (h * w), (keys // w) % h, keys % w], -1)
            table = _lookup(x.indices, x.shape)
            src = out_idx[:, None, :] * s - 1 + offsets[None] + 1  # input index + 1 border
            inside = ((src >= 0) & (src < torch.tensor([n + 2 for n in x.shape], device=src.device))).all(-1)
            src = src.clamp(min=0)
            src = torch.minimum(src, torch.tensor([n + 1 for n in x.shape], device=src.device))
            nbr = torch.where(inside, table[src.unbind(-1)], torch.full_like(inside, -1, dtype=torch.long))
        feats = torch.cat([x.features, x.features.new_zeros(1, x.features.shape[1])])  # row -1 = zeros
        # index_select, not feats[nbr]: its backward is index_add_ (advanced indexing's index_put_ is ~10x slower)
        rows = torch.where(nbr < 0, len(x.features), nbr).reshape(-1)  # -1 (no neighbour) -> the zero row
        gathered = feats.index_select(0, rows).view(*nbr.shape, feats.shape[1])  # (N_out, 27, Cin)
        w = self.weight.reshape(self.weight.shape[0], 27, -1)  # (Cout, 27, Cin), tap order (kd, kh, kw)
        out = torch.einsum("nkc,okc->no", gathered, w)
        return SparseVolume(out, out_idx, shape)


class SparseBatchNorm(nn.BatchNorm1d):
    def forward(self, x: SparseVolume) -> SparseVolume:  # type: ignore[override]
        return SparseVolume(super().forward(x.features), x.indices, x.shape)


class SparseReLU(nn.Module):
    def forward(self, x: SparseVolume) -> SparseVolume:
        return SparseVolume(torch.relu(x.features), x.indices, x.shape)


def _block(cin: int, cout: int, n: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(n):
        layers += [SparseConv3d(cin if i == 0 else cout, cout), SparseBatchNorm(cout, eps=1e-3, momentum=0.01),
                   SparseReLU()]
    return nn.Sequential(*layers)


def _down(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(SparseConv3d(cin, cout, subm=False, stride=2), SparseBatchNorm(cout, eps=1e-3, momentum=0.01),
                         SparseReLU())


class SparseConvNet(nn.Module):
    """Neural Body's SparseConvNet as released: conv0 (2 subm), down0, conv1 (2), down1, conv2 (3); dense output
    at 1/4 resolution."""

    def __init__(self, channels: tuple[int, int, int] = (16, 32, 64)) -> None:
        super().__init__()
        c0, c1, c2 = channels
        self.conv0, self.down0 = _block(c0, c0, 2), _down(c0, c1)
        self.conv1, self.down1 = _block(c1, c1, 2), _down(c1, c2)
        self.conv2 = _block(c2, c2, 3)

    def forward(self, x: SparseVolume) -> torch.Tensor:
        for m in (self.conv0, self.down0, self.conv1, self.down1, self.conv2):
            x = m(x)
        return x.dense()
