"""One configuration schema for the `paper` and `tiny` presets (spec §9); no code path exists for one preset only.

`paper` is the released architecture (state dict = reference/manifests/morphable_diffusion_facescape.json). `tiny`
keeps every module and key, with small widths and 64x64 images so that training runs on a laptop CPU:
latent 8x8 (VAE factor 8 as in the paper), UNet width 32, CLIP ViT width 64 with 2 layers on 32x32 inputs,
a 16^3 spatial volume, sparse-net channels 8/16/32, frustum depth 16 and dims 16/32/64/128.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class UNetConfig:
    in_channels: int = 8
    out_channels: int = 4
    model_channels: int = 320
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (4, 2, 1)
    num_heads: int = 8
    context_dim: int = 768
    groups: int = 32
    depth_heads: int = 4
    gradient_checkpointing: bool = False


@dataclass(frozen=True)
class VAEConfig:
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    z_channels: int = 4
    embed_dim: int = 4
    groups: int = 32
    scale_factor: float = 0.18215


@dataclass(frozen=True)
class CLIPConfig:
    image_size: int = 224
    patch_size: int = 14
    width: int = 1024
    layers: int = 24
    heads: int = 16
    embed_dim: int = 768
    vocab_size: int = 49408  # kept for the text leftovers of the OpenAI state dict (never used)
    context_length: int = 77
    text_width: int = 768


@dataclass(frozen=True)
class VolumeConfig:
    time_embed_dim: int = 256
    view_dim: int = 4
    target_channels: int = 16
    grid_size: int = 32
    grid_half_extent: float = 0.5
    voxel_size: float = 0.005
    sparse_channels: tuple[int, int, int] = (16, 32, 64)
    frustum_depth: int = 48
    frustum_half_length: float = 0.86603
    frustum_dims: tuple[int, int, int, int] = (64, 128, 256, 512)
    groups: int = 8
    num_views: int = 16


@dataclass(frozen=True)
class ModelConfig:
    preset: str = "paper"
    image_size: int = 256
    view_num: int = 16
    projection: str = "perspective"  # or "orthographic" (THuman)
    unet: UNetConfig = field(default_factory=UNetConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    clip: CLIPConfig = field(default_factory=CLIPConfig)
    volume: VolumeConfig = field(default_factory=VolumeConfig)
    concat_unscaled_input_latent: bool = True  # spec §3.14: x_concat / 0.18215 (Zero123 quirk)

    @property
    def latent_size(self) -> int:
        return self.image_size // 8

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "ModelConfig":
        sub = {"unet": UNetConfig, "vae": VAEConfig, "clip": CLIPConfig, "volume": VolumeConfig}
        kw = {k: (sub[k](**{kk: tuple(vv) if isinstance(vv, list) else vv for kk, vv in v.items()})
                  if k in sub else v) for k, v in d.items()}
        return ModelConfig(**kw)


def paper(projection: str = "perspective") -> ModelConfig:
    return ModelConfig(preset="paper", projection=projection)


def tiny(projection: str = "perspective") -> ModelConfig:
    return ModelConfig(
        preset="tiny", image_size=64, projection=projection,
        unet=UNetConfig(model_channels=32, num_heads=2, context_dim=32, groups=8),
        vae=VAEConfig(ch=16, ch_mult=(1, 2, 2, 2), num_res_blocks=1, groups=8),
        clip=CLIPConfig(image_size=32, patch_size=8, width=64, layers=2, heads=2, embed_dim=32, vocab_size=16,
                        context_length=8, text_width=32),
        volume=VolumeConfig(time_embed_dim=32, target_channels=8, grid_size=16, sparse_channels=(8, 16, 32),
                            frustum_depth=16, frustum_dims=(32, 32, 64, 64), groups=8),
    )


def tiny_narrow(projection: str = "perspective") -> ModelConfig:
    """`tiny` with a narrower UNet (widths 24/48/48/48) and frustum (16/16/32/32): 6.0 MB in float16 instead of
    23 MB, so that a second shipped reference model (the body one) keeps the repository's weights under 30 MB.
    Same autoencoder and image encoder as `tiny` (one first stage serves both); a CPU training step costs the
    same (the volume, the autoencoder and the per-view work dominate at 64 px)."""
    base = tiny(projection)
    return dataclasses.replace(
        base, preset="tiny-narrow",
        unet=dataclasses.replace(base.unet, model_channels=24, channel_mult=(1, 2, 2, 2)),
        volume=dataclasses.replace(base.volume, frustum_dims=(16, 16, 32, 32)))


PRESETS = {"paper": paper, "tiny": tiny, "tiny-narrow": tiny_narrow}
#: the presets that train their own small autoencoder on the view stores (the paper preset uses the released one)
TINY_PRESETS = ("tiny", "tiny-narrow")
