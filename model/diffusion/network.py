"""The whole Morphable Diffusion model with the released state-dict layout (spec §3.1, manifests/)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.diffusion.clip import FrozenCLIPImageEmbedder
from model.diffusion.config import ModelConfig
from model.diffusion.precision import check_weight_storage
from model.diffusion.schedule import schedule_arrays
from model.diffusion.unet import DepthWiseAttention, timestep_embedding
from model.diffusion.vae import AutoencoderKL
from model.diffusion.volume import SpatialVolumeNet, VolumeGeometry


class UNetWrapper(nn.Module):
    """`model.diffusion_model`: input = [x_t, x_concat / 0.18215] (Zero123 quirk kept for the checkpoints)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.diffusion_model = DepthWiseAttention(cfg.unet, cfg.volume.frustum_dims, cfg.volume.groups)
        self.concat_scale = 1.0 / cfg.vae.scale_factor if cfg.concat_unscaled_input_latent else 1.0

    def forward(self, x: torch.Tensor, t: torch.Tensor, clip: torch.Tensor, frustum: dict[int, torch.Tensor],
                x_concat: torch.Tensor) -> torch.Tensor:
        unet = self.__dict__.get("_compiled") or self.diffusion_model
        return unet(torch.cat([x, x_concat * self.concat_scale], 1), t, clip, frustum)

    def use_compiled(self, mode: str) -> None:
        """Run the UNet through torch.compile(mode) from now on ("off": eager again). Kept outside the module tree,
        so the state dict and the checkpoints keep their keys."""
        if mode == "off":
            self.__dict__.pop("_compiled", None)
            self.__dict__.pop("_compiled_mode", None)
        elif self.__dict__.get("_compiled_mode") != mode:
            self.__dict__["_compiled"] = torch.compile(self.diffusion_model, mode=mode, dynamic=False)
            self.__dict__["_compiled_mode"] = mode


class MorphableDiffusion(nn.Module):
    def __init__(self, cfg: ModelConfig, multiview_buffers: bool = True) -> None:
        super().__init__()
        self.cfg = cfg
        vc = cfg.volume
        self.model = UNetWrapper(cfg)
        self.spatial_volume = SpatialVolumeNet(cfg)
        self.time_embed = nn.Sequential(nn.Linear(vc.time_embed_dim, vc.time_embed_dim), nn.SiLU(True),
                                        nn.Linear(vc.time_embed_dim, vc.time_embed_dim))
        self.first_stage_model = AutoencoderKL(cfg.vae)
        self.clip_image_encoder = FrozenCLIPImageEmbedder(cfg.clip)
        for name, arr in schedule_arrays().items():
            self.register_buffer(name, torch.tensor(arr))
        if multiview_buffers:  # written by every released MD training checkpoint, never read (spec §3.1)
            self.register_buffer("poses", torch.zeros(vc.num_views, 3, 4))
            self.register_buffer("Ks", torch.zeros(vc.num_views, 3, 3))
            self.register_buffer("azimuth", torch.zeros(vc.num_views))
        #: the low precision the autocast-cast weights are stored in (model.diffusion.precision); None: fp32
        self.autocast_weights: torch.dtype | None = None
        for frozen in (self.first_stage_model, self.clip_image_encoder):
            frozen.eval()
            frozen.requires_grad_(False)

    # --- conditioning -------------------------------------------------------------------------------------------
    def view_embedding(self, b: int, n: int, device, dtype) -> torch.Tensor:
        """[d_el, sin d_az, cos d_az, 0] with every angle 0 in the release: constant [0, 0, 1, 0] (spec §3.6)."""
        v = torch.zeros(b, n, 4, device=device, dtype=dtype)
        v[..., 2] = 1.0
        return v

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(..., 3, H, W) in [-1, 1] -> posterior samples x 0.18215 (..., 4, H/8, W/8)."""
        lead = images.shape[:-3]
        z = self.first_stage_model.encode(images.reshape(-1, *images.shape[-3:]), True, generator)
        return (z * self.cfg.vae.scale_factor).reshape(*lead, *z.shape[1:])

    @torch.no_grad()
    def encode_moments(self, images: torch.Tensor) -> torch.Tensor:
        """(..., 3, H, W) in [-1, 1] -> posterior [mean, clamped log-variance] (..., 8, H/8, W/8): the frozen,
        deterministic part of `encode_images`, which a training run may compute once per view and cache."""
        lead = images.shape[:-3]
        mean, logvar = self.first_stage_model.encode_moments(images.reshape(-1, *images.shape[-3:]))
        moments = torch.cat([mean, logvar], 1)
        return moments.reshape(*lead, *moments.shape[1:])

    def posterior_sample(self, moments: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """`encode_images` from cached moments (..., 8, h, w): the same noise draw, so the same latents."""
        lead = moments.shape[:-3]
        mean, logvar = moments.reshape(-1, *moments.shape[-3:]).chunk(2, dim=1)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        z = mean + torch.exp(0.5 * logvar) * noise
        return (z * self.cfg.vae.scale_factor).reshape(*lead, *z.shape[1:])

    @torch.no_grad()
    def decode_latents(self, z: torch.Tensor) -> torch.Tensor:
        lead = z.shape[:-3]
        x = self.first_stage_model.decode(z.reshape(-1, *z.shape[-3:]) / self.cfg.vae.scale_factor)
        return x.reshape(*lead, *x.shape[1:])

    @torch.no_grad()
    def clip_embedding(self, images: torch.Tensor) -> torch.Tensor:
        return self.clip_image_encoder(images)

    def t_embedding(self, t: torch.Tensor) -> torch.Tensor:
        return self.time_embed(timestep_embedding(t, self.cfg.volume.time_embed_dim))

    # --- denoising ----------------------------------------------------------------------------------------------
    def geometry(self, batch: dict) -> VolumeGeometry:
        """The cameras' and the mesh's share of every step, computed once (a sampler reuses it for all steps)."""
        return self.spatial_volume.geometry(batch["target_K"], batch["target_RT"], batch["vertices"], batch["coord"],
                                            batch["out_sh"], batch["bounds"])

    def spatial(self, x_t: torch.Tensor, t: torch.Tensor, batch: dict,
                geometry: VolumeGeometry | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(t_embed, spatial volume) from all views' latents (B, N, 4, L, L)."""
        b, n = x_t.shape[:2]
        t_embed = self.t_embedding(t).to(x_t.dtype)
        v = self.view_embedding(b, n, x_t.device, x_t.dtype)
        volume = self.spatial_volume.construct(x_t, t_embed, v, geometry or self.geometry(batch))
        return t_embed, volume

    def view_frustum(self, volume: torch.Tensor, t_embed: torch.Tensor, views: torch.Tensor,
                     geometry: VolumeGeometry) -> dict[int, torch.Tensor]:
        """Frustum pyramid (B*n, C, D, L, L per scale) of the views `views` ((B, n)) of each sample."""
        b, n = views.shape
        rows = torch.arange(b, device=views.device)[:, None]
        grid = geometry.frustum_grid[rows, views].reshape(b * n, *geometry.frustum_grid.shape[2:])
        v = self.view_embedding(b, n, volume.device, t_embed.dtype).reshape(b * n, 4)
        return self.spatial_volume.frustum(volume.repeat_interleave(n, 0), t_embed.repeat_interleave(n, 0), v, grid)

    def eps_views(self, x_views: torch.Tensor, t: torch.Tensor, t_embed: torch.Tensor, volume: torch.Tensor,
                  views: torch.Tensor, clip: torch.Tensor, x_concat: torch.Tensor, batch: dict,
                  drop: dict[str, torch.Tensor] | None = None,
                  geometry: VolumeGeometry | None = None) -> torch.Tensor:
        """Predicted noise (B, n, 4, L, L) of the views `views` ((n,) shared or (B, n) per sample) whose latents
        are `x_views` (B, n, 4, L, L); `drop` holds per-sample 0/1 keep masks for clip / volume / concat (all zeros
        = the null condition)."""
        b = x_views.shape[0]
        views = views.expand(b, -1) if views.dim() == 1 else views
        n = views.shape[1]
        frustum = self.view_frustum(volume, t_embed, views, geometry or self.geometry(batch))
        ctx = clip.repeat_interleave(n, 0)
        concat = x_concat.repeat_interleave(n, 0)
        if drop is not None:
            keep_clip, keep_vol, keep_cat = (drop[key].repeat_interleave(n, 0) for key in ("clip", "volume", "concat"))
            ctx = ctx * keep_clip.view(-1, 1, 1)
            frustum = {s: f * keep_vol.view(-1, 1, 1, 1, 1) for s, f in frustum.items()}
            concat = concat * keep_cat.view(-1, 1, 1, 1)
        return self.denoise(x_views, t, ctx, frustum, concat)

    def denoise(self, x_views: torch.Tensor, t: torch.Tensor, ctx: torch.Tensor, frustum: dict[int, torch.Tensor],
                concat: torch.Tensor) -> torch.Tensor:
        """The UNet on (B, n) views whose conditions are given per row (B*n): CLIP context, frustum pyramid, input
        latent; t (B,) per sample."""
        b, n = x_views.shape[:2]
        eps = self.model(x_views.reshape(b * n, *x_views.shape[2:]), t.repeat_interleave(n, 0), ctx, frustum, concat)
        return eps.reshape(b, n, *eps.shape[1:])

    def forward(self, batch: dict, generator: torch.Generator | None = None,
                drop_probability: float = 0.0, loss_views: int = 1) -> torch.Tensor:
        """The training loss (what DistributedDataParallel wraps)."""
        return self.training_loss(batch, generator, drop_probability, loss_views)

    def training_loss(self, batch: dict, generator: torch.Generator | None = None,
                      drop_probability: float = 0.0, loss_views: int = 1) -> torch.Tensor:
        """Spec §3.15: eps-MSE on one random target view per sample (`loss_views` = 1, released); the volume sees
        all 16 noisy views. The batch holds images, or instead their cached encodings (target_moments,
        input_moments, input_clip). `loss_views` > 1 supervises that many distinct views per sample from the same volume
        (more signal per step for the same volume cost: what the CPU demo uses)."""
        if "target_moments" in batch:  # the frozen encoders' outputs, cached per view (pipelines.frozen_encodings)
            x0 = self.posterior_sample(batch["target_moments"], generator)
            x_concat = self.posterior_sample(batch["input_moments"], generator)
            clip = batch["input_clip"]
        else:
            tgt = batch["target_image"].permute(0, 1, 4, 2, 3)  # (B, N, 3, H, W)
            inp = batch["input_image"].permute(0, 3, 1, 2)
            x0 = self.encode_images(tgt, generator)
            x_concat = self.encode_images(inp, generator)
            clip = self.clip_embedding(inp)
        b, n = x0.shape[:2]
        dev = x0.device
        t = torch.randint(0, len(self.alphas_cumprod), (b,), generator=generator, device=dev)
        noise = torch.randn(x0.shape, generator=generator, device=dev, dtype=x0.dtype)
        a = self.alphas_cumprod[t].view(b, 1, 1, 1, 1).to(x0.dtype)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        geometry = self.geometry(batch)
        t_embed, volume = self.spatial(x_t, t, batch, geometry)
        if loss_views == 1:
            views = torch.randint(0, n, (b,), generator=generator, device=dev)[:, None]
        else:
            views = torch.argsort(torch.rand(b, n, generator=generator, device=dev), dim=1)[:, :loss_views]
        drop = None
        if drop_probability > 0:  # spec §3.14 split: clip / volume / concat / all, each `drop_probability`
            r = torch.rand(b, generator=generator, device=dev)
            p = drop_probability
            all_ = r <= p
            drop = {"concat": (~(all_ | ((r > p) & (r <= 2 * p)))).to(x0.dtype),
                    "volume": (~(all_ | ((r > 2 * p) & (r <= 3 * p)))).to(x0.dtype),
                    "clip": (~(all_ | ((r > 3 * p) & (r <= 4 * p)))).to(x0.dtype)}
        rows = torch.arange(b, device=dev)[:, None]
        eps = self.eps_views(x_t[rows, views], t, t_embed, volume, views, clip, x_concat, batch, drop, geometry)
        return F.mse_loss(eps.float(), noise[rows, views].float())


#: conditioning ablations: which branches the *conditional* prediction keeps (the unconditional one keeps none).
#: "no_mesh" zeroes the 3DMM volume's frustum features, "no_image" the CLIP embedding and the input latent; both
#: are the null conditions the model saw under training's condition dropout.
ABLATION_KEEP: dict[str, dict[str, float]] = {
    "none": {"clip": 1.0, "volume": 1.0, "concat": 1.0},
    "no_mesh": {"clip": 1.0, "volume": 0.0, "concat": 1.0},
    "no_image": {"clip": 0.0, "volume": 1.0, "concat": 0.0},
}


class ConditionedDenoiser:
    """Adapter for `model.diffusion.ddim.sample`: one spatial volume per step, CFG's null condition = zeros for the
    CLIP embedding, every frustum scale and the input latent (spec §3.14). `keep` (an ABLATION_KEEP entry) drops
    branches from the conditional prediction too, for the conditioning ablations.

    Work is removed, not approximated: the cameras' and the mesh's share of a step (`VolumeGeometry`) is computed
    once per sample, and the frustum net runs only for predictions that keep the volume — the release multiplies
    the null condition's frustum features by 0, so they are zeros here without being computed."""

    def __init__(self, model: MorphableDiffusion, batch: dict, clip: torch.Tensor, x_concat: torch.Tensor,
                 keep: dict[str, float] | None = None) -> None:
        self.model, self.batch, self.clip, self.x_concat = model, batch, clip, x_concat
        self.geometry = model.geometry(batch)
        b = clip.shape[0]
        keep = keep or ABLATION_KEEP["none"]
        self.keep_volume = float(keep["volume"]) != 0.0
        #: per-sample keep masks of the conditional prediction; None where the release applies none
        self.keep = None if all(float(v) == 1.0 for v in keep.values()) else {
            k: torch.full((b,), float(keep[k]), device=clip.device, dtype=clip.dtype) for k in ("clip", "volume", "concat")}

    def begin_step(self, x_t: torch.Tensor, t: torch.Tensor):
        check_weight_storage(self.model, x_t.device.type)
        return self.model.spatial(x_t, t, self.batch, self.geometry)

    def _conditional_parts(self, state, views: torch.Tensor):
        """(CLIP context, frustum pyramid, input latent) of the conditional prediction, per row (B*n)."""
        t_embed, volume = state
        n = views.shape[1]
        ctx, concat = self.clip.repeat_interleave(n, 0), self.x_concat.repeat_interleave(n, 0)
        if self.keep_volume:
            frustum = self.model.view_frustum(volume, t_embed, views, self.geometry)
        else:
            frustum = self.model.spatial_volume.null_frustum(len(ctx), ctx.device, volume.dtype)
        if self.keep is not None:
            keep = {k: m.repeat_interleave(n, 0) for k, m in self.keep.items()}
            ctx = ctx * keep["clip"].view(-1, 1, 1)
            concat = concat * keep["concat"].view(-1, 1, 1, 1)
            if self.keep_volume:
                frustum = {s: f * keep["volume"].view(-1, 1, 1, 1, 1) for s, f in frustum.items()}
        return ctx, frustum, concat

    def eps(self, state, x_t: torch.Tensor, t: torch.Tensor, views: torch.Tensor, conditional: bool) -> torch.Tensor:
        views = views.expand(x_t.shape[0], -1) if views.dim() == 1 else views
        if conditional:
            return self.model.denoise(x_t, t, *self._conditional_parts(state, views))
        rows = x_t.shape[0] * views.shape[1]
        ctx = self.clip.new_zeros(rows, *self.clip.shape[1:])
        concat = self.x_concat.new_zeros(rows, *self.x_concat.shape[1:])
        frustum = self.model.spatial_volume.null_frustum(rows, ctx.device, state[1].dtype)
        return self.model.denoise(x_t, t, ctx, frustum, concat)

    def eps_pair(self, state, x_t: torch.Tensor, t: torch.Tensor,
                 views: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(conditional, unconditional) noise in one UNet pass over a doubled batch, as the release batches CFG:
        half the kernel launches of two passes, which is what a launch-bound GPU step needs."""
        b = x_t.shape[0]
        views = views.expand(b, -1) if views.dim() == 1 else views
        ctx, frustum, concat = self._conditional_parts(state, views)

        def with_null(a: torch.Tensor) -> torch.Tensor:  # the null half of the batch: zeros
            return torch.cat([a, torch.zeros_like(a)])

        eps = self.model.denoise(torch.cat([x_t] * 2), torch.cat([t] * 2), with_null(ctx),
                                 {s: with_null(f) for s, f in frustum.items()}, with_null(concat))
        return eps[:b], eps[b:]


def state_dict_manifest(cfg: ModelConfig) -> dict[str, dict]:
    """{key: {"shape": [...], "dtype": ...}} built on the meta device (no weights allocated)."""
    with torch.device("meta"):
        model = MorphableDiffusion(cfg)
    return {k: {"shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", "")}
            for k, v in sorted(model.state_dict().items())}


def parameter_groups(model: MorphableDiffusion, lr: float, volume_lr_mult: float = 10.0,
                     finetune_unet: bool = True) -> list[dict]:
    """AdamW groups of spec §3.16: UNet (all, or only the depth-wise attention) at lr; time_embed and the
    spatial volume at lr x 10."""
    unet = model.model.diffusion_model
    unet_params = list(unet.parameters()) if finetune_unet else \
        list(unet.middle_conditions.parameters()) + list(unet.output_conditions.parameters())
    return [{"params": unet_params, "lr": lr},
            {"params": list(model.time_embed.parameters()), "lr": lr * volume_lr_mult},
            {"params": list(model.spatial_volume.parameters()), "lr": lr * volume_lr_mult}]


