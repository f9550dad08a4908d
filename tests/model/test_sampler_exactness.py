"""The sampler's removed work changes nothing (issue 23, item 2): the denoiser computes the cameras' and the mesh's
share of a step once per sample, skips the frustum net wherever its output is multiplied by 0, and may store the
network's weights in bf16 where autocast casts them anyway. Each is checked on the tiny preset against the
straightforward per-step recomposition below, built from the modules' public parts the way the release runs a step
(everything recomputed, CFG as one doubled batch with 0/1 masks)."""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model.diffusion.config import tiny
from model.diffusion.ddim import DDIMConfig, sample
from model.diffusion.example_batch import example_batch
from model.diffusion.network import ABLATION_KEEP, ConditionedDenoiser, MorphableDiffusion
from model.diffusion.sparse import SparseVolume
from model.diffusion.volume import frustum_points, grid_points, project_normalized

pytestmark = pytest.mark.numerics


class PerStepDenoiser:
    """Every step recomputes projections, voxel merges, rulebooks and frustum points; the null condition runs the
    frustum net and multiplies its output by 0."""

    def __init__(self, model: MorphableDiffusion, batch: dict, clip: torch.Tensor, x_concat: torch.Tensor,
                 keep: dict[str, float]) -> None:
        self.m, self.batch, self.clip, self.x_concat = model, batch, clip, x_concat
        b = clip.shape[0]
        self.keep = {k: torch.full((b,), float(v), device=clip.device) for k, v in keep.items()}
        self.null = {k: torch.zeros(b, device=clip.device) for k in keep}

    def begin_step(self, x_t, t):
        m, sv, vc, batch = self.m, self.m.spatial_volume, self.m.cfg.volume, self.batch
        b, n, _, lat, _ = x_t.shape
        t_embed = m.t_embedding(t)
        v = m.view_embedding(b, n, x_t.device, x_t.dtype)
        feats = sv.target_encoder(x_t.reshape(b * n, 4, lat, lat), t_embed.repeat_interleave(n, 0), v.reshape(b * n, 4))
        pts = grid_points(vc.grid_size, vc.grid_half_extent, x_t.device)
        coords = project_normalized(pts[None].expand(b * n, -1, -1), batch["target_K"].reshape(b * n, 4, 4),
                                    batch["target_RT"].reshape(b * n, 3, 4), lat, m.cfg.image_size, sv.orthographic)
        vs = vc.grid_size
        unproj = F.grid_sample(feats, coords[:, None], align_corners=True).reshape(b * n, -1, vs, vs, vs)
        verts = batch["vertices"]
        vgrid = (verts / vc.grid_half_extent)[:, None].expand(b, n, -1, -1).reshape(b * n, 1, 1, -1, 3)
        vfeat = sv.smpl_feature_extractor(F.grid_sample(unproj, vgrid, align_corners=True).reshape(b, n, -1, verts.shape[1]))
        volumes = []
        for i in range(b):
            shape = tuple(int(s) for s in batch["out_sh"][i])
            dense = sv.xyzc_net(SparseVolume.from_points(vfeat[i], batch["coord"][i].long(), shape))
            q = ((pts[:, [2, 1, 0]] - batch["bounds"][i, 0, [2, 1, 0]]) / vc.voxel_size) / batch["out_sh"][i].float() * 2 - 1
            volumes.append(F.grid_sample(dense[None], q[:, [2, 1, 0]].reshape(1, vs, vs, vs, 3), align_corners=True)[0])
        return t_embed, torch.stack(volumes)

    def _eps(self, state, x, t, views, masks):
        m, sv, vc = self.m, self.m.spatial_volume, self.m.cfg.volume
        t_embed, volume = state
        b, n = x.shape[:2]
        rows = torch.arange(b, device=x.device)[:, None]
        k = self.batch["target_K"][rows, views].reshape(b * n, 4, 4)
        rt = self.batch["target_RT"][rows, views].reshape(b * n, 3, 4)
        pts = frustum_points(k, rt, m.cfg.latent_size, m.cfg.image_size, vc.frustum_depth, vc.frustum_half_length,
                             sv.orthographic)
        grid = F.grid_sample(volume.repeat_interleave(n, 0), pts / vc.grid_half_extent, align_corners=True)
        v = m.view_embedding(b, n, x.device, x.dtype).reshape(b * n, 4)
        frustum = sv.frustum_volume_feats(grid, t_embed.repeat_interleave(n, 0), v)
        keep = {key: mask.repeat_interleave(n, 0) for key, mask in masks.items()}
        frustum = {s: f * keep["volume"].view(-1, 1, 1, 1, 1) for s, f in frustum.items()}
        ctx = self.clip.repeat_interleave(n, 0) * keep["clip"].view(-1, 1, 1)
        concat = self.x_concat.repeat_interleave(n, 0) * keep["concat"].view(-1, 1, 1, 1)
        eps = m.model(x.reshape(b * n, *x.shape[2:]), t.repeat_interleave(n, 0), ctx, frustum, concat)
        return eps.reshape(b, n, *eps.shape[1:])

    def eps_pair(self, state, x, t, views):
        b = x.shape[0]
        views = views.expand(b, -1)
        t_embed, volume = state
        doubled = (torch.cat([t_embed] * 2), torch.cat([volume] * 2))
        masks = {k: torch.cat([self.keep[k], self.null[k]]) for k in self.keep}
        self_clip, self_concat = self.clip, self.x_concat
        self.clip, self.x_concat = torch.cat([self.clip] * 2), torch.cat([self.x_concat] * 2)
        self.batch = {**self.batch, **{k: torch.cat([self.batch[k]] * 2) for k in ("target_K", "target_RT")}}
        try:
            eps = self._eps(doubled, torch.cat([x] * 2), torch.cat([t] * 2), torch.cat([views] * 2), masks)
        finally:
            self.clip, self.x_concat = self_clip, self_concat
            self.batch = {**self.batch, **{k: self.batch[k][:b] for k in ("target_K", "target_RT")}}
        return eps[:b], eps[b:]


def _model_and_inputs():
    torch.manual_seed(0)
    cfg = tiny()
    model = MorphableDiffusion(cfg).eval()
    with torch.no_grad():  # the released zero-initialised output layers would make every eps 0
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    one, two = example_batch(cfg, b=1, seed=0), example_batch(cfg, b=1, seed=1, n_vertices=280)
    batch = {k: (torch.cat([one[k], two[k]]) if k != "coord" and k != "vertices" else None) for k in one}
    # two meshes of different sizes: pad by repeating the last vertex (a duplicate voxel, merged by averaging)
    nv = one["vertices"].shape[1]
    pad = lambda a: torch.cat([a, a[:, -1:].expand(-1, nv - a.shape[1], -1)], 1)  # noqa: E731
    batch["vertices"] = torch.cat([one["vertices"], pad(two["vertices"])])
    batch["coord"] = torch.cat([one["coord"], pad(two["coord"])])
    inp = batch["input_image"].permute(0, 3, 1, 2)
    with torch.no_grad():
        clip, latent = model.clip_embedding(inp), model.encode_images(inp, torch.Generator().manual_seed(0))
    return model, batch, clip, latent


def _sample(den, model, steps=3, views=8, seed=5):
    cfg = model.cfg
    with torch.no_grad():
        return sample(den, (2, cfg.view_num, 4, cfg.latent_size, cfg.latent_size), model.alphas_cumprod.numpy(),
                      DDIMConfig(steps=steps, batch_view_num=views, seed=seed))


@pytest.mark.parametrize("ablation", ["none", "no_mesh", "no_image"])
def test_once_per_sample_geometry_and_skipped_null_frustum_equal_the_per_step_recomputation(ablation):
    model, batch, clip, latent = _model_and_inputs()
    keep = ABLATION_KEEP[ablation]
    fast = _sample(ConditionedDenoiser(model, batch, clip, latent, keep=keep), model)
    reference = _sample(PerStepDenoiser(model, batch, clip, latent, keep), model)
    assert fast.abs().mean() > 0.1 and torch.isfinite(fast).all()
    torch.testing.assert_close(fast, reference, rtol=0, atol=1e-6)


def test_one_geometry_serves_every_step_and_each_sample_its_own_mesh():
    """The cached geometry is per sample: swapping the two samples' meshes swaps their noise predictions."""
    model, batch, clip, latent = _model_and_inputs()
    den = ConditionedDenoiser(model, batch, clip, latent)
    swap = {k: v.flip(0) for k, v in batch.items()}
    den_swapped = ConditionedDenoiser(model, swap, clip.flip(0), latent.flip(0))
    x = torch.randn(2, model.cfg.view_num, 4, model.cfg.latent_size, model.cfg.latent_size)
    views = torch.arange(4)
    with torch.no_grad():
        for t in (torch.tensor([900, 900]), torch.tensor([300, 300])):
            a, _ = den.eps_pair(den.begin_step(x, t), x[:, views], t, views)
            b, _ = den_swapped.eps_pair(den_swapped.begin_step(x.flip(0), t), x.flip(0)[:, views], t, views)
            torch.testing.assert_close(a, b.flip(0), rtol=0, atol=1e-6)
    assert (a[0] - a[1]).abs().mean() > 1e-3  # the two samples differ


def test_bf16_weight_storage_equals_bf16_autocast_of_fp32_weights():
    """Weights that autocast casts to bf16 anyway, stored in bf16: the same bf16 arithmetic, bit for bit, and half
    their bytes."""
    from model.diffusion.precision import store_autocast_weights

    model, batch, clip, latent = _model_and_inputs()
    stored = copy.deepcopy(model)
    before = sum(p.numel() * p.element_size() for p in stored.parameters())
    saved = store_autocast_weights(stored, torch.bfloat16)
    after = sum(p.numel() * p.element_size() for p in stored.parameters())
    assert saved == before - after and saved > 0.4 * sum(
        p.numel() * p.element_size() for p in list(model.model.parameters()) + list(model.spatial_volume.parameters()))
    assert stored.first_stage_model.encoder.conv_in.weight.dtype == torch.float32  # run outside autocast: kept
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a = _sample(ConditionedDenoiser(model, batch, clip, latent), model, steps=2)
        b = _sample(ConditionedDenoiser(stored, batch, clip, latent), stored, steps=2)
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="bf16"):
        _sample(ConditionedDenoiser(stored, batch, clip, latent), stored, steps=1)  # fp32 on bf16 weights


def test_a_bf16_inference_load_stores_its_weights_and_samples_the_same_views():
    """The user's path: load_model for a bf16 sampler stores the weights in bf16; its views equal bf16 autocast over
    the fp32 weights, byte for byte; fp32 sampling on it is a clear error."""
    from model.diffusion.precision import store_autocast_weights
    from pipelines.generate import sample_views, virtual_cameras
    from pipelines.model_loading import load_model
    from tests.pipelines.test_reference_model import PRETRAINED

    bf16 = DDIMConfig(steps=2, precision="bf16")
    stored = load_model(PRETRAINED, projection="perspective", device="cpu", sampler=bf16).model
    plain = load_model(PRETRAINED, projection="perspective", device="cpu").model
    unet = stored.model.diffusion_model
    assert unet.input_blocks[0][0].weight.dtype == torch.bfloat16 and unet.out[0].weight.dtype == torch.float32
    assert plain.autocast_weights is None and store_autocast_weights(stored, torch.bfloat16) == 0  # idempotent
    cfg = stored.cfg
    ks, rts = virtual_cameras(cfg.image_size, cfg.view_num)
    img = np.random.default_rng(0).uniform(-1, 1, (cfg.image_size, cfg.image_size, 3)).astype(np.float32)
    verts = np.random.default_rng(0).normal(size=(300, 3)) * 0.1
    a, b = (sample_views(m, img, ks, rts, verts, bf16) for m in (stored, plain))
    assert (a == b).all() and a.std() > 5
    with pytest.raises(ValueError, match="load the model again"):
        sample_views(stored, img, ks, rts, verts, DDIMConfig(steps=2, precision="fp32"))
