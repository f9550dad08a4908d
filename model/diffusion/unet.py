"""The SD-1.x UNet (openaimodel layout) with SyncDreamer's depth-wise attention reading the frustum pyramid."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from model.diffusion.attention import DepthTransformer, SpatialTransformer
from model.diffusion.config import UNetConfig


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding [cos | sin] (the released order)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


class ResBlock(nn.Module):
    def __init__(self, channels: int, emb_channels: int, out_channels: int, groups: int) -> None:
        super().__init__()
        self.in_layers = nn.Sequential(nn.GroupNorm(groups, channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3,
                                                                                             padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, out_channels))
        self.out_layers = nn.Sequential(nn.GroupNorm(groups, out_channels), nn.SiLU(), nn.Dropout(0.0),
                                        nn.Conv2d(out_channels, out_channels, 3, padding=1))
        nn.init.zeros_(self.out_layers[3].weight)
        nn.init.zeros_(self.out_layers[3].bias)
        self.skip_connection = nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x) + self.emb_layers(emb).to(x.dtype)[..., None, None]
        return self.skip_connection(x) + self.out_layers(h)


class Downsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class TimestepEmbedSequential(nn.Sequential):
    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb)
            elif isinstance(layer, SpatialTransformer):
                x = layer(x, context)
            else:
                x = layer(x)
        return x


class DepthWiseAttention(nn.Module):
    """UNetModel + `middle_conditions` / `output_conditions` (SyncDreamer's DepthWiseAttention)."""

    OUTPUT_TO_CONDITION = {3: 0, 4: 1, 5: 2, 6: 3, 7: 4, 8: 5, 9: 6, 10: 7, 11: 8}

    def __init__(self, cfg: UNetConfig, volume_dims: tuple[int, int, int, int], depth_groups: int = 8) -> None:
        super().__init__()
        mc, g = cfg.model_channels, cfg.groups
        emb = mc * 4
        ckpt = cfg.gradient_checkpointing
        self.model_channels = mc
        self.time_embed = nn.Sequential(nn.Linear(mc, emb), nn.SiLU(), nn.Linear(emb, emb))

        def attention(ch: int) -> SpatialTransformer:
            return SpatialTransformer(ch, cfg.num_heads, ch // cfg.num_heads, cfg.context_dim, g, ckpt)

        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(nn.Conv2d(cfg.in_channels, mc, 3, padding=1))])
        chans, ch, ds = [mc], mc, 1
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                layers: list[nn.Module] = [ResBlock(ch, emb, mult * mc, g)]
                ch = mult * mc
                if ds in cfg.attention_resolutions:
                    layers.append(attention(ch))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                chans.append(ch)
            if level != len(cfg.channel_mult) - 1:
                self.input_blocks.append(TimestepEmbedSequential(Downsample(ch)))
                chans.append(ch)
                ds *= 2
        self.middle_block = TimestepEmbedSequential(ResBlock(ch, emb, ch, g), attention(ch), ResBlock(ch, emb, ch, g))
        self.output_blocks = nn.ModuleList()
        out_chans = []
        for level, mult in list(enumerate(cfg.channel_mult))[::-1]:
            for i in range(cfg.num_res_blocks + 1):
                layers = [ResBlock(ch + chans.pop(), emb, mc * mult, g)]
                ch = mc * mult
                if ds in cfg.attention_resolutions:
                    layers.append(attention(ch))
                if level and i == cfg.num_res_blocks:
                    layers.append(Upsample(ch))
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))
                out_chans.append(ch)
        self.out = nn.Sequential(nn.GroupNorm(g, ch), nn.SiLU(), nn.Conv2d(mc, cfg.out_channels, 3, padding=1))
        nn.init.zeros_(self.out[2].weight)
        nn.init.zeros_(self.out[2].bias)
        # depth-wise attention: context = the frustum feature at the block's resolution, d_head = ctx / 2
        d0, d1, d2, d3 = volume_dims
        top = mc * cfg.channel_mult[-1]
        self.middle_conditions = DepthTransformer(top, cfg.depth_heads, d3 // 2, d3, depth_groups, ckpt)
        ctx_of = [d2, d2, d1, d1, d1, d0, d0, d0, d0]
        self.output_conditions = nn.ModuleList([
            DepthTransformer(out_chans[b], cfg.depth_heads, c // 2, c, depth_groups, ckpt)
            for b, c in zip(sorted(self.OUTPUT_TO_CONDITION), ctx_of)])

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor,
                source_dict: dict[int, torch.Tensor]) -> torch.Tensor:
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels).to(x.dtype))
        hs, h = [], x
        for module in self.input_blocks:
            h = module(h, emb, context)
            hs.append(h)
        h = self.middle_block(h, emb, context)
        h = self.middle_conditions(h, source_dict[h.shape[-1]])
        for index, module in enumerate(self.output_blocks):
            h = module(torch.cat([h, hs.pop()], dim=1), emb, context)
            if index in self.OUTPUT_TO_CONDITION:
                h = self.output_conditions[self.OUTPUT_TO_CONDITION[index]](h, source_dict[h.shape[-1]])
        return self.out(h)
