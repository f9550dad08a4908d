"""Attention blocks of the SD-1.x UNet and the depth-wise (frustum) attention, on scaled_dot_product_attention.

Module and parameter names follow the released code so state dicts load unchanged.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CrossAttention(nn.Module):
    def __init__(self, query_dim: int, context_dim: int | None = None, heads: int = 8, dim_head: int = 64) -> None:
        super().__init__()
        inner = heads * dim_head
        context_dim = context_dim or query_dim
        self.heads = heads
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, query_dim), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        b, n, _ = x.shape
        q, k, v = self.to_q(x), self.to_k(context), self.to_v(context)
        q, k, v = (t.reshape(b, t.shape[1], self.heads, -1).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class GEGLU(nn.Module):
    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, gate = self.proj(x).chunk(2, dim=-1)
        return x * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4) -> None:
        super().__init__()
        self.net = nn.Sequential(GEGLU(dim, dim * mult), nn.Dropout(0.0), nn.Linear(dim * mult, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int, context_dim: int, checkpoint: bool = False) -> None:
        super().__init__()
        self.attn1 = CrossAttention(dim, None, heads, dim_head)
        self.ff = FeedForward(dim)
        self.attn2 = CrossAttention(dim, context_dim, heads, dim_head)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.checkpoint = checkpoint

    def _forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        if self.checkpoint and self.training:
            return torch.utils.checkpoint.checkpoint(self._forward, x, context, use_reentrant=False)
        return self._forward(x, context)


class SpatialTransformer(nn.Module):
    """SD-1.x (legacy=False, 1x1-conv projections) transformer over the pixels of a feature map."""

    def __init__(self, channels: int, heads: int, dim_head: int, context_dim: int, groups: int,
                 checkpoint: bool = False) -> None:
        super().__init__()
        inner = heads * dim_head
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.proj_in = nn.Conv2d(channels, inner, 1)
        self.transformer_blocks = nn.ModuleList([BasicTransformerBlock(inner, heads, dim_head, context_dim,
                                                                       checkpoint)])
        self.proj_out = nn.Conv2d(inner, channels, 1)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = self.proj_in(self.norm(x))
        y = y.flatten(2).transpose(1, 2)
        for block in self.transformer_blocks:
            y = block(y, context)
        y = y.transpose(1, 2).reshape(b, -1, h, w)
        return self.proj_out(y) + x


class DepthAttention(nn.Module):
    """Each pixel attends over the depth samples of its frustum ray: softmax over D, per head."""

    def __init__(self, query_dim: int, context_dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        inner = heads * dim_head
        self.heads, self.dim_head = heads, dim_head
        self.to_q = nn.Conv2d(query_dim, inner, 1, bias=False)
        self.to_k = nn.Conv3d(context_dim, inner, 1, bias=False)
        self.to_v = nn.Conv3d(context_dim, inner, 1, bias=False)
        self.to_out = nn.Conv2d(inner, query_dim, 1, bias=False)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        d = context.shape[2]
        hd, dh = self.heads, self.dim_head
        q = self.to_q(x).reshape(b, hd, dh, h * w).permute(0, 3, 1, 2).reshape(b * h * w, hd, 1, dh)
        k = self.to_k(context).reshape(b, hd, dh, d, h * w).permute(0, 4, 1, 3, 2).reshape(b * h * w, hd, d, dh)
        v = self.to_v(context).reshape(b, hd, dh, d, h * w).permute(0, 4, 1, 3, 2).reshape(b * h * w, hd, d, dh)
        out = F.scaled_dot_product_attention(q, k, v)  # (b h w, heads, 1, dh)
        out = out.reshape(b, h * w, hd * dh).transpose(1, 2).reshape(b, hd * dh, h, w)
        return self.to_out(out)


class DepthTransformer(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int, context_dim: int, groups: int = 8,
                 checkpoint: bool = False) -> None:
        super().__init__()
        inner = heads * dim_head
        self.proj_in = nn.Sequential(nn.Conv2d(dim, inner, 1), nn.GroupNorm(groups, inner), nn.SiLU(True))
        self.proj_context = nn.Sequential(nn.Conv3d(context_dim, context_dim, 1, bias=False),
                                          nn.GroupNorm(groups, context_dim), nn.ReLU(True))
        self.depth_attn = DepthAttention(inner, context_dim, heads, dim_head)
        self.proj_out = nn.Sequential(nn.GroupNorm(groups, inner), nn.ReLU(True),
                                      nn.Conv2d(inner, inner, 3, 1, 1, bias=False), nn.GroupNorm(groups, inner),
                                      nn.ReLU(True), nn.Conv2d(inner, dim, 3, 1, 1, bias=False))
        nn.init.zeros_(self.proj_out[5].weight)
        self.checkpoint = checkpoint

    def _forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        y = self.depth_attn(self.proj_in(x), self.proj_context(context))
        return self.proj_out(y) + x

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        if self.checkpoint and self.training:
            return torch.utils.checkpoint.checkpoint(self._forward, x, context, use_reentrant=False)
        return self._forward(x, context)
