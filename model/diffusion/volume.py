"""The 3DMM-aware feature volume (spec §3.5–3.12): target-view encoder, unprojection, vertex features, sparse net,
resampling to the spatial volume, per-view frustum volumes and FrustumTV3DNet."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from model.diffusion.config import ModelConfig, VolumeConfig
from model.diffusion.sparse import ConvPlan, MergePlan, SparseConvNet


class Image2DResBlockWithTV(nn.Module):
    def __init__(self, dim: int, t_dim: int, v_dim: int, groups: int) -> None:
        super().__init__()
        self.time_embed = nn.Conv2d(t_dim, dim, 1)
        self.view_embed = nn.Conv2d(v_dim, dim, 1)
        self.conv = nn.Sequential(nn.GroupNorm(groups, dim), nn.SiLU(True), nn.Conv2d(dim, dim, 3, 1, 1),
                                  nn.GroupNorm(groups, dim), nn.SiLU(True), nn.Conv2d(dim, dim, 3, 1, 1))

    def forward(self, x: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x + self.time_embed(t[..., None, None]) + self.view_embed(v[..., None, None]))


class NoisyTargetViewEncoder(nn.Module):
    def __init__(self, t_dim: int, v_dim: int, run_dim: int, out_dim: int, groups: int) -> None:
        super().__init__()
        self.init_conv = nn.Conv2d(4, run_dim, 3, 1, 1)
        self.out_conv0 = Image2DResBlockWithTV(run_dim, t_dim, v_dim, groups)
        self.out_conv1 = Image2DResBlockWithTV(run_dim, t_dim, v_dim, groups)
        self.out_conv2 = Image2DResBlockWithTV(run_dim, t_dim, v_dim, groups)
        self.final_out = nn.Sequential(nn.GroupNorm(groups, run_dim), nn.SiLU(True), nn.Conv2d(run_dim, out_dim, 3, 1, 1))

    def forward(self, x: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        x = self.init_conv(x)
        for block in (self.out_conv0, self.out_conv1, self.out_conv2):
            x = block(x, t, v)
        return self.final_out(x)


class SMPLFeatureExtractor(nn.Module):
    """The released settings reduce it to one Conv1d per view (shared weights) and a mean over views."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv1d(dim, dim, 1)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:  # (B, N, C, Nv) -> (B, Nv, C)
        b, n, c, nv = feats.shape
        return self.conv0(feats.reshape(b * n, c, nv)).reshape(b, n, c, nv).mean(1).transpose(1, 2)


class FrustumTVBlock(nn.Module):
    def __init__(self, x_dim: int, t_dim: int, v_dim: int, out_dim: int, stride: int, groups: int) -> None:
        super().__init__()
        self.t_conv = nn.Conv3d(t_dim, x_dim, 1)
        self.v_conv = nn.Conv3d(v_dim, x_dim, 1)
        self.bn = nn.GroupNorm(groups, x_dim)
        self.conv = nn.Conv3d(x_dim, out_dim, 3, stride, 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        x = x + self.t_conv(t[..., None, None, None]) + self.v_conv(v[..., None, None, None])
        return self.conv(F.silu(self.bn(x)))


class FrustumTVUpBlock(nn.Module):
    def __init__(self, x_dim: int, t_dim: int, v_dim: int, out_dim: int, groups: int) -> None:
        super().__init__()
        self.t_conv = nn.Conv3d(t_dim, x_dim, 1)
        self.v_conv = nn.Conv3d(v_dim, x_dim, 1)
        self.norm = nn.GroupNorm(groups, x_dim)
        self.conv = nn.ConvTranspose3d(x_dim, out_dim, 3, 2, 1, output_padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        x = x + self.t_conv(t[..., None, None, None]) + self.v_conv(v[..., None, None, None])
        return self.conv(F.silu(self.norm(x)))


class FrustumTV3DNet(nn.Module):
    def __init__(self, in_dim: int, t_dim: int, v_dim: int, dims: tuple[int, int, int, int], groups: int) -> None:
        super().__init__()
        d0, d1, d2, d3 = dims
        self.conv0 = nn.Conv3d(in_dim, d0, 3, 1, 1)
        self.conv1 = FrustumTVBlock(d0, t_dim, v_dim, d1, 2, groups)
        self.conv2 = FrustumTVBlock(d1, t_dim, v_dim, d1, 1, groups)
        self.conv3 = FrustumTVBlock(d1, t_dim, v_dim, d2, 2, groups)
        self.conv4 = FrustumTVBlock(d2, t_dim, v_dim, d2, 1, groups)
        self.conv5 = FrustumTVBlock(d2, t_dim, v_dim, d3, 2, groups)
        self.conv6 = FrustumTVBlock(d3, t_dim, v_dim, d3, 1, groups)
        self.up0 = FrustumTVUpBlock(d3, t_dim, v_dim, d2, groups)
        self.up1 = FrustumTVUpBlock(d2, t_dim, v_dim, d1, groups)
        self.up2 = FrustumTVUpBlock(d1, t_dim, v_dim, d0, groups)

    def forward(self, x: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> dict[int, torch.Tensor]:
        x0 = self.conv0(x)
        x1 = self.conv2(self.conv1(x0, t, v), t, v)
        x2 = self.conv4(self.conv3(x1, t, v), t, v)
        x3 = self.conv6(self.conv5(x2, t, v), t, v)
        x2 = self.up0(x3, t, v) + x2
        x1 = self.up1(x2, t, v) + x1
        x0 = self.up2(x1, t, v) + x0
        w = x0.shape[-1]
        return {w: x0, w // 2: x1, w // 4: x2, w // 8: x3}


def grid_points(size: int, half: float, device=None, dtype=torch.float32) -> torch.Tensor:
    """(size^3, 3) xyz points; voxel [d, h, w] = (x = l[w], y = l[h], z = l[d]) (grid_sample convention)."""
    lin = torch.linspace(-half, half, size, device=device, dtype=dtype)
    z, y, x = torch.meshgrid(lin, lin, lin, indexing="ij")
    return torch.stack([x, y, z], -1).reshape(-1, 3)


def project_normalized(points: torch.Tensor, k: torch.Tensor, rt: torch.Tensor, latent: int, image: int,
                       orthographic: bool) -> torch.Tensor:
    """Normalised [-1, 1] feature-map coordinates (B, P, 2) of world points (B, P, 3) (spec §3.8).

    Perspective: K scaled by latent/image, division by max(z, 1e-4), normalised by (L - 1) / 2 with no
    half-pixel shift (SyncDreamer). Orthographic: NDC of Blender's 4x4 projection."""
    ones = torch.ones_like(points[..., :1])
    hom = torch.cat([points, ones], -1)
    if orthographic:
        rt4 = torch.cat([rt, torch.tensor([0, 0, 0, 1.0], device=rt.device, dtype=rt.dtype).expand(
            rt.shape[0], 1, 4)], 1)
        return (hom @ (k @ rt4).transpose(1, 2))[..., :2]
    ratio = latent / image
    scale = torch.tensor([ratio, ratio, 1.0], device=k.device, dtype=k.dtype)
    p = (scale[:, None] * k[:, :3, :3]) @ rt
    uvz = hom @ p.transpose(1, 2)
    uv = uvz[..., :2] / uvz[..., 2:].clamp(min=1e-4)
    return uv / ((latent - 1) / 2) - 1


def frustum_points(k: torch.Tensor, rt: torch.Tensor, latent: int, image: int, depth: int, half_length: float,
                   orthographic: bool) -> torch.Tensor:
    """World points (B, D, L, L, 3) of each view's frustum: D planes over [dist - h, dist + h] (spec §3.11)."""
    b, dev, dt = k.shape[0], k.device, k.dtype
    centre = -(rt[:, :, :3].transpose(1, 2) @ rt[:, :, 3:])[..., 0]
    dist = centre.norm(dim=-1)
    steps = torch.linspace(0, 1, depth, device=dev, dtype=dt)
    depths = (dist - half_length)[:, None] + (2 * half_length) * steps[None]  # (B, D)
    v, u = torch.meshgrid(torch.arange(latent, device=dev, dtype=dt), torch.arange(latent, device=dev, dtype=dt),
                          indexing="ij")
    bottom = torch.tensor([0, 0, 0, 1.0], device=dev, dtype=dt).expand(b, 1, 4)
    if orthographic:
        un, vn = 2 * u / (latent - 1) - 1, 2 * v / (latent - 1) - 1
        cam = torch.stack([un, vn, torch.ones_like(un)], -1).reshape(1, -1, 3) @ torch.linalg.inv(k)[:, :3, :3].transpose(1, 2)
        cam = cam[:, None].expand(b, depth, -1, -1).clone()
        cam[..., 2] = depths[:, :, None]
        inv = torch.linalg.inv(torch.cat([rt, bottom], 1))
    else:
        ratio = latent / image
        scale = torch.tensor([ratio, ratio, 1.0], device=dev, dtype=dt)
        proj = torch.cat([(scale[:, None] * k[:, :3, :3]) @ rt, bottom], 1)
        inv = torch.linalg.inv(proj)
        uv = torch.stack([u, v], -1).reshape(1, 1, -1, 2)
        z = depths[:, :, None, None]
        cam = torch.cat([uv * z, z.expand(-1, -1, uv.shape[2], 1)], -1)
    hom = torch.cat([cam, torch.ones_like(cam[..., :1])], -1)
    world = hom @ inv[:, None].transpose(-1, -2)
    return world[..., :3].reshape(b, depth, latent, latent, 3)


@dataclass
class VolumeGeometry:
    """Everything a denoising step reads of the cameras and the mesh: the grid's projection into each view, the
    vertices' sample points, the sparse net's merge and rulebooks, the dense volume's query points and every view's
    frustum sample points. Computed once per sample (`SpatialVolumeNet.geometry`), in float32 whatever the autocast,
    and read by every step: no step repeats this work or synchronises with the host for it."""

    unproject: torch.Tensor  # (B*N, 1, P, 2) the grid points in each view's normalised feature-map coordinates
    vertex_grid: torch.Tensor  # (B*N, 1, 1, Nv, 3) vertices in the grid's [-1, 1] coordinates
    merges: list[MergePlan]  # per sample: vertices -> unique voxels
    rulebooks: list[list[ConvPlan]]  # per sample: the sparse net's convolutions
    queries: list[torch.Tensor]  # per sample (1, V, V, V, 3): grid points in the sparse net's output volume
    frustum_grid: torch.Tensor  # (B, N, D, L, L, 3) each view's frustum points in the grid's [-1, 1] coordinates


class SpatialVolumeNet(nn.Module):
    """Target encoder + vertex features + SparseConvNet + frustum 3D U-Net (state-dict prefix `spatial_volume`)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        vc: VolumeConfig = cfg.volume
        self.cfg, self.vc = cfg, vc
        c = vc.target_channels
        self.target_encoder = NoisyTargetViewEncoder(vc.time_embed_dim, vc.view_dim, c, c, vc.groups)
        self.smpl_feature_extractor = SMPLFeatureExtractor(c)
        self.xyzc_net = SparseConvNet(vc.sparse_channels)
        self.frustum_volume_feats = FrustumTV3DNet(vc.sparse_channels[-1], vc.time_embed_dim, vc.view_dim,
                                                   vc.frustum_dims, vc.groups)

    @property
    def orthographic(self) -> bool:
        return self.cfg.projection == "orthographic"

    def geometry(self, k: torch.Tensor, rt: torch.Tensor, vertices: torch.Tensor, coord: torch.Tensor,
                 out_sh: torch.Tensor, bounds: torch.Tensor) -> VolumeGeometry:
        """The cameras' and the mesh's part of `construct` and `frustum` for a batch: K (B, N, 4, 4), RT (B, N, 3, 4),
        vertices (B, Nv, 3), voxel coords (B, Nv, 3), out_sh (B, 3), bounds (B, 2, 3)."""
        with torch.autocast(k.device.type, enabled=False):
            k, rt, vertices, bounds = (a.float() for a in (k, rt, vertices, bounds))
            b, n = k.shape[:2]
            vs, half, lat = self.vc.grid_size, self.vc.grid_half_extent, self.cfg.latent_size
            pts = grid_points(vs, half, k.device, k.dtype)
            k_rows, rt_rows = k.reshape(b * n, *k.shape[2:]), rt.reshape(b * n, 3, 4)
            unproject = project_normalized(pts[None].expand(b * n, -1, -1), k_rows, rt_rows, lat,
                                           self.cfg.image_size, self.orthographic)[:, None]
            vertex_grid = (vertices / half)[:, None].expand(b, n, -1, -1).reshape(b * n, 1, 1, -1, 3)
            merges, rulebooks, queries = [], [], []
            for i in range(b):  # one sparse net per sample (BatchNorm statistics per sample, as released)
                merge = MergePlan.of(coord[i].long(), tuple(int(s) for s in out_sh[i]))
                merges.append(merge)
                rulebooks.append(self.xyzc_net.plan(merge.indices, merge.shape))
                q = ((pts[:, [2, 1, 0]] - bounds[i, 0, [2, 1, 0]]) / self.vc.voxel_size) / out_sh[i].to(pts.dtype) * 2 - 1
                queries.append(q[:, [2, 1, 0]].reshape(1, vs, vs, vs, 3))
            frustum = frustum_points(k_rows, rt_rows, lat, self.cfg.image_size, self.vc.frustum_depth,
                                     self.vc.frustum_half_length, self.orthographic)
            frustum_grid = (frustum / half).reshape(b, n, *frustum.shape[1:])
        return VolumeGeometry(unproject, vertex_grid, merges, rulebooks, queries, frustum_grid)

    def construct(self, x_t: torch.Tensor, t_embed: torch.Tensor, v_embed: torch.Tensor,
                  geometry: VolumeGeometry) -> torch.Tensor:
        """Spatial volume (B, C, V, V, V) from all views' noisy latents (B, N, 4, L, L) and the mesh."""
        b, n, _, lat, _ = x_t.shape
        vs = self.vc.grid_size
        feats = self.target_encoder(x_t.reshape(b * n, *x_t.shape[2:]), t_embed.repeat_interleave(n, 0),
                                    v_embed.reshape(b * n, -1)).reshape(b * n, -1, lat, lat)
        unproj = F.grid_sample(feats, geometry.unproject.to(feats.dtype), mode="bilinear", padding_mode="zeros",
                               align_corners=True).reshape(b * n, -1, vs, vs, vs)
        vfeat = F.grid_sample(unproj, geometry.vertex_grid.to(unproj.dtype), mode="bilinear", padding_mode="zeros",
                              align_corners=True).reshape(b, n, -1, geometry.vertex_grid.shape[3])
        vfeat = self.smpl_feature_extractor(vfeat)  # (B, Nv, C)
        volumes = []
        for i in range(b):
            dense = self.xyzc_net(geometry.merges[i].merge(vfeat[i]), geometry.rulebooks[i])
            volumes.append(F.grid_sample(dense[None], geometry.queries[i].to(dense.dtype), mode="bilinear",
                                         padding_mode="zeros", align_corners=True)[0])
        return torch.stack(volumes)

    def frustum(self, volume: torch.Tensor, t_embed: torch.Tensor, v_embed: torch.Tensor,
                grid: torch.Tensor) -> dict[int, torch.Tensor]:
        """Frustum pyramid for one view per row: volume (B, C, V, V, V) sampled at the row's frustum points `grid`
        (B, D, L, L, 3) (a row of `VolumeGeometry.frustum_grid`)."""
        frustum = F.grid_sample(volume, grid.to(volume.dtype), mode="bilinear", padding_mode="zeros",
                                align_corners=True)
        return self.frustum_volume_feats(frustum, t_embed, v_embed)

    def null_frustum(self, rows: int, device, dtype) -> dict[int, torch.Tensor]:
        """What `frustum` times 0 is, without running it: zeros of each scale's shape (CFG's null condition and the
        no-mesh ablation multiply the frustum features by 0)."""
        lat, depth = self.cfg.latent_size, self.vc.frustum_depth
        out = {}
        for scale, channels in enumerate(self.vc.frustum_dims):
            out[lat] = torch.zeros(rows, channels, depth, lat, lat, device=device, dtype=dtype)
            lat, depth = (lat - 1) // 2 + 1, (depth - 1) // 2 + 1  # a 3x3x3 conv, stride 2, padding 1
        return out
