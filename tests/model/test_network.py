"""The network: checkpoint-exact state dict (paper, on the meta device) and tiny forward / backward / sampling."""
import gzip
import json

import pytest
import torch

from model.diffusion.config import ModelConfig, paper, tiny
from model.diffusion.network import ConditionedDenoiser, MorphableDiffusion, state_dict_manifest
from model.diffusion.example_batch import example_batch
from tests.conftest import TESTDATA

MANIFESTS = TESTDATA / "manifests"


def read_manifest(name: str) -> dict:
    """A published checkpoint's state-dict manifest (tests/data/manifests/<name>.json.gz)."""
    return json.loads(gzip.decompress((MANIFESTS / f"{name}.json.gz").read_bytes()))


def test_paper_state_dict_equals_the_published_manifest():
    published = read_manifest("morphable_diffusion_facescape")
    assert len(published) == 1592  # the released state dict (tests/data/manifests)
    assert state_dict_manifest(paper()) == published
    assert state_dict_manifest(paper("orthographic")) == published  # projection is not stored


def _batch(cfg: ModelConfig, b: int = 2, seed: int = 0) -> dict:
    return example_batch(cfg, b, seed)


def test_tiny_forward_backward_shapes():
    torch.manual_seed(0)
    cfg = tiny()
    model = MorphableDiffusion(cfg)
    with torch.no_grad():  # zero-initialised output convs block every gradient at init (as released): perturb them
        for p in model.parameters():
            if p.requires_grad and not p.any():
                p.normal_(0, 1e-2)
    batch = _batch(cfg)
    loss = model.training_loss(batch, torch.Generator().manual_seed(0), drop_probability=0.05)
    assert loss.shape == () and torch.isfinite(loss)
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert all(g is not None for g in grads.values())
    assert any(g.abs().sum() > 0 for n, g in grads.items() if n.startswith("spatial_volume.xyzc_net"))
    assert all(p.grad is None for p in model.first_stage_model.parameters())  # frozen


@pytest.mark.numerics
def test_tiny_sampling_runs_and_is_seeded():
    from model.diffusion.ddim import DDIMConfig, sample

    torch.manual_seed(0)
    cfg = tiny()
    model = MorphableDiffusion(cfg).eval()
    batch = _batch(cfg, b=1)
    inp = batch["input_image"].permute(0, 3, 1, 2)
    with torch.no_grad():
        den = ConditionedDenoiser(model, batch, model.clip_embedding(inp), model.encode_images(inp))
        shape = (1, cfg.view_num, 4, cfg.latent_size, cfg.latent_size)
        a = sample(den, shape, model.alphas_cumprod.numpy(), DDIMConfig(steps=3, batch_view_num=8))
        b = sample(den, shape, model.alphas_cumprod.numpy(), DDIMConfig(steps=3, batch_view_num=8))
        images = model.decode_latents(a)
    torch.testing.assert_close(a, b)
    assert images.shape == (1, cfg.view_num, 3, cfg.image_size, cfg.image_size) and torch.isfinite(images).all()


@pytest.mark.numerics
def test_cfg_in_one_batched_pass_equals_two_passes():
    """The sampler batches the conditional and null passes (as released); same noise as two separate passes."""
    torch.manual_seed(0)
    cfg = tiny()
    model = MorphableDiffusion(cfg).eval()
    batch = _batch(cfg, b=2)
    inp = batch["input_image"].permute(0, 3, 1, 2)
    with torch.no_grad():
        for p in model.parameters():  # the released zero-initialised output layers would make every eps 0
            p.add_(torch.randn_like(p) * 0.05)
        den = ConditionedDenoiser(model, batch, model.clip_embedding(inp), model.encode_images(inp))
        x = torch.randn(2, cfg.view_num, 4, cfg.latent_size, cfg.latent_size)
        t = torch.tensor([500, 20])
        state = den.begin_step(x, t)
        views = torch.arange(3, 11)
        eps_c, eps_u = den.eps_pair(state, x[:, views], t, views)
        separate_c = den.eps(state, x[:, views], t, views, True)
        separate_u = den.eps(state, x[:, views], t, views, False)
    assert eps_c.abs().mean() > 0.05 and (eps_c - eps_u).abs().mean() > 1e-3  # the condition matters here
    torch.testing.assert_close(eps_c, separate_c, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(eps_u, separate_u, rtol=1e-5, atol=1e-5)


@pytest.mark.numerics
def test_bf16_autocast_and_gradient_checkpointing():
    import dataclasses

    torch.manual_seed(0)
    cfg = tiny()
    cfg = dataclasses.replace(cfg, unet=dataclasses.replace(cfg.unet, gradient_checkpointing=True))
    model = MorphableDiffusion(cfg)
    batch = _batch(cfg, b=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model.training_loss(batch, torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss)
    assert model.model.diffusion_model.output_conditions[0].checkpoint


@pytest.mark.numerics
def test_ablations_remove_exactly_their_condition():
    """`no_mesh`: the prediction no longer depends on the mesh (vertices / voxels); `no_image`: no longer on the input
    image; the full condition depends on both. Checked on one denoising step of a perturbed tiny network, with the
    batched CFG pass agreeing with the single conditional pass."""
    from model.diffusion.network import ABLATION_KEEP

    torch.manual_seed(0)
    cfg = tiny()
    model = MorphableDiffusion(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    a, b = _batch(cfg, b=1, seed=0), _batch(cfg, b=1, seed=1)
    mixed_mesh = {**a, **{k: b[k] for k in ("vertices", "coord", "out_sh", "bounds")}}
    x = torch.randn(1, cfg.view_num, 4, cfg.latent_size, cfg.latent_size)
    t = torch.tensor([400])
    views = torch.arange(0, 4)

    with torch.no_grad():  # (the input latent is a posterior sample: drawn once per image)
        conditions = {id(img): (model.clip_embedding(img["input_image"].permute(0, 3, 1, 2)),
                                model.encode_images(img["input_image"].permute(0, 3, 1, 2),
                                                    torch.Generator().manual_seed(0))) for img in (a, b)}

    def eps(batch, image_from, ablation):
        with torch.no_grad():
            den = ConditionedDenoiser(model, batch, *conditions[id(image_from)], keep=ABLATION_KEEP[ablation])
            state = den.begin_step(x, t)
            single = den.eps(state, x[:, views], t, views, True)
            paired, _ = den.eps_pair(state, x[:, views], t, views)
        torch.testing.assert_close(single, paired, rtol=1e-5, atol=1e-5)
        return single

    def differ(u, v):
        return float((u - v).abs().mean())

    assert differ(eps(a, a, "none"), eps(mixed_mesh, a, "none")) > 1e-3  # the mesh matters ...
    assert differ(eps(a, a, "none"), eps(a, b, "none")) > 1e-3  # ... and so does the image
    assert differ(eps(a, a, "no_mesh"), eps(mixed_mesh, a, "no_mesh")) < 1e-6
    assert differ(eps(a, a, "no_image"), eps(a, b, "no_image")) < 1e-6
    assert differ(eps(a, a, "no_image"), eps(mixed_mesh, a, "no_image")) > 1e-3  # the mesh still does
