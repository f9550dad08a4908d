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
class MergePlan:
    """How duplicate voxels merge: which unique site each point lands in, and how many land there."""

    inverse: torch.Tensor  # (P,) long
    counts: torch.Tensor  # (U,) float
    indices: torch.Tensor  # (U, 3) long
    shape: tuple[int, int, int]

    @staticmethod
    def of(indices: torch.Tensor, shape) -> "MergePlan":
        idx = indices.long()
        d, h, w = (int(s) for s in shape)
        flat = (idx[:, 0] * h + idx[:, 1]) * w + idx[:, 2]
        uniq, inverse = torch.unique(flat, return_inverse=True)
        counts = torch.zeros(len(uniq), device=idx.device)
        counts.index_add_(0, inverse, torch.ones_like(flat, dtype=counts.dtype))
        return MergePlan(inverse, counts, torch.stack([uniq // (h * w), (uniq // w) % h, uniq % w], -1), (d, h, w))

    def merge(self, features: torch.Tensor) -> "SparseVolume":
        summed = torch.zeros(len(self.indices), features.shape[1], dtype=features.dtype, device=features.device)
        summed.index_add_(0, self.inverse, features)
        return SparseVolume(summed / self.counts.to(features.dtype)[:, None], self.indices, self.shape)


@dataclass
class SparseVolume:
    features: torch.Tensor  # (N, C)
    indices: torch.Tensor  # (N, 3) long, (z, y, x)
    shape: tuple[int, int, int]  # (D, H, W)

    @staticmethod
    def from_points(features: torch.Tensor, indices: torch.Tensor, shape) -> "SparseVolume":
        """Merge duplicate voxels by averaging their features."""
        return MergePlan.of(indices, shape).merge(features)

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


@dataclass
class ConvPlan:
    """A convolution's rulebook: for every output site and kernel tap, the input row it reads (one past the last
    input row: the zero row, no neighbour). It depends only on the active sites, so a sampler computes it once per mesh, not per step
    (where its unique / boolean-mask steps would also synchronise with the host)."""

    rows: torch.Tensor  # (N_out * 27,) long
    out_idx: torch.Tensor  # (N_out, 3) long
    shape: tuple[int, int, int]


class SparseConv3d(nn.Module):
    """3x3x3 sparse convolution, no bias. `subm=True`: outputs at the input's active sites (SubMConv3d);
    else stride-2 / padding-1 downsampling whose outputs are every site reached by an active input."""

    def __init__(self, cin: int, cout: int, subm: bool = True, stride: int = 1) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(cout, 3, 3, 3, cin))
        nn.init.kaiming_uniform_(self.weight.view(cout, -1).t().reshape(27 * cin, cout).t(), a=5 ** 0.5)
        self.subm, self.stride = subm, stride

    def plan(self, indices: torch.Tensor, in_shape: tuple[int, int, int]) -> ConvPlan:
        offsets = _OFFSETS.to(indices.device)
        if self.subm:
            out_idx, shape = indices, in_shape
            table = _lookup(indices, in_shape)
            # neighbour of output o for kernel tap k is o + k - 1 (+1 border in the table)
            nbr = table[(out_idx[:, None, :] + offsets[None]).unbind(-1)]
        else:
            s = self.stride
            shape = tuple((n + 2 - 3) // s + 1 for n in in_shape)
            cand = indices[:, None, :] + 1 - offsets[None]  # o * s = i + pad - k
            ok = (cand % s == 0).all(-1)
            cand = torch.div(cand, s, rounding_mode="floor")
            ok &= ((cand >= 0) & (cand < torch.tensor(shape, device=cand.device))).all(-1)
            hits = cand[ok]  # unique sites through 1-D keys: same (z, y, x) order as unique(dim=0), far faster
            _, h, w = shape
            keys = torch.unique((hits[:, 0] * h + hits[:, 1]) * w + hits[:, 2])
            out_idx = torch.stack([keys // (h * w), (keys // w) % h, keys % w], -1)
            table = _lookup(indices, in_shape)
            src = out_idx[:, None, :] * s - 1 + offsets[None] + 1  # input index + 1 border
            inside = ((src >= 0) & (src < torch.tensor([n + 2 for n in in_shape], device=src.device))).all(-1)
            src = src.clamp(min=0)
            src = torch.minimum(src, torch.tensor([n + 1 for n in in_shape], device=src.device))
            nbr = torch.where(inside, table[src.unbind(-1)], torch.full_like(inside, -1, dtype=torch.long))
        rows = torch.where(nbr < 0, len(indices), nbr).reshape(-1)  # -1 (no neighbour) -> the zero row
        return ConvPlan(rows, out_idx, shape)

    def apply(self, features: torch.Tensor, plan: ConvPlan) -> torch.Tensor:
        """Output features (N_out, Cout) of input features (N_in, Cin) through `plan`."""
        feats = torch.cat([features, features.new_zeros(1, features.shape[1])])  # the last row = zeros
        # index_select, not feats[nbr]: its backward is index_add_ (advanced indexing's index_put_ is ~10x slower)
        gathered = feats.index_select(0, plan.rows).view(len(plan.out_idx), 27, feats.shape[1])  # (N_out, 27, Cin)
        w = self.weight.reshape(self.weight.shape[0], 27, -1)  # (Cout, 27, Cin), tap order (kd, kh, kw)
        return torch.einsum("nkc,okc->no", gathered, w)

    def forward(self, x: SparseVolume) -> SparseVolume:
        plan = self.plan(x.indices, x.shape)
        return SparseVolume(self.apply(x.features, plan), plan.out_idx, plan.shape)


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

    def convolutions(self) -> list[SparseConv3d]:
        return [m for m in self.modules() if isinstance(m, SparseConv3d)]

    def plan(self, indices: torch.Tensor, shape) -> list[ConvPlan]:
        """Every convolution's rulebook for input sites `indices` (merged, unique) in `shape`; consecutive
        submanifold convolutions share one."""
        plans: list[ConvPlan] = []
        idx, sh = indices, tuple(int(s) for s in shape)
        previous_subm = False
        for conv in self.convolutions():
            plans.append(plans[-1] if conv.subm and previous_subm else conv.plan(idx, sh))
            idx, sh, previous_subm = plans[-1].out_idx, plans[-1].shape, conv.subm
        return plans

    def forward(self, x: SparseVolume, plans: list[ConvPlan] | None = None) -> torch.Tensor:
        """Dense (C, D/4, H/4, W/4) output; `plans` (from `plan(x.indices, x.shape)`) skips the rulebook work."""
        plans = plans or self.plan(x.indices, x.shape)
        convs = iter(zip(self.convolutions(), plans))
        feats = x.features
        for block in (self.conv0, self.down0, self.conv1, self.down1, self.conv2):
            for layer in block:
                if isinstance(layer, SparseConv3d):
                    conv, plan = next(convs)
                    feats = conv.apply(feats, plan)
                elif isinstance(layer, SparseBatchNorm):
                    feats = nn.BatchNorm1d.forward(layer, feats)
                else:
                    feats = torch.relu(feats)
        return SparseVolume(feats, plans[-1].out_idx, plans[-1].shape).dense()
