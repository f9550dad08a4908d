"""The CUDA paths (run by benchmarks/gpu_check.sh on a GPU machine; deselected on CPU by the `gpu` marker)."""
import pytest
import torch

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cuda():
    if not torch.cuda.is_available():
        pytest.fail("the gpu tests need a CUDA device (they are deselected by default: run them with -m gpu)")
    return torch.device("cuda")


def test_tiny_loss_on_cuda_equals_cpu(cuda):
    from model.diffusion.config import tiny
    from model.diffusion.example_batch import example_batch
    from model.diffusion.network import MorphableDiffusion

    torch.manual_seed(0)
    cpu = MorphableDiffusion(tiny())
    gpu = MorphableDiffusion(tiny()).to(cuda)
    gpu.load_state_dict(cpu.state_dict())
    batch = example_batch(tiny(), b=2)
    with torch.no_grad():
        a = cpu.training_loss(batch, torch.Generator().manual_seed(1))
        b = gpu.training_loss({k: v.to(cuda) for k, v in batch.items()}, torch.Generator(cuda).manual_seed(1))
    assert torch.isfinite(b)
    # different generators per device: compare a deterministic part instead, the clip embedding
    x = batch["input_image"].permute(0, 3, 1, 2)
    torch.testing.assert_close(cpu.clip_embedding(x), gpu.clip_embedding(x.to(cuda)).cpu(), rtol=1e-4, atol=1e-4)
    assert torch.isfinite(a)


def test_bf16_training_step_and_seeded_sampling_on_cuda(cuda):
    from model.diffusion.config import tiny
    from model.diffusion.ddim import DDIMConfig
    from model.diffusion.example_batch import example_batch
    from model.diffusion.network import MorphableDiffusion
    from pipelines.generate import sample_views, virtual_cameras

    torch.manual_seed(0)
    model = MorphableDiffusion(tiny()).to(cuda)
    batch = {k: v.to(cuda) for k, v in example_batch(tiny(), b=2).items()}
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = model.training_loss(batch, torch.Generator(cuda).manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
    model.eval()
    import numpy as np

    ks, rts = virtual_cameras(64, 16)
    img = np.zeros((64, 64, 3), np.float32)
    verts = np.random.default_rng(0).normal(size=(500, 3)) * 0.1
    a = sample_views(model, img, ks, rts, verts, DDIMConfig(steps=3, seed=4))
    b = sample_views(model, img, ks, rts, verts, DDIMConfig(steps=3, seed=4))
    assert a.shape == (16, 64, 64, 3) and (a == b).all()


def test_removed_sampler_work_is_exact_on_cuda(cuda):
    """Item 2 on the GPU: the once-per-sample geometry and the skipped null frustum equal the per-step
    recomposition; bf16-stored weights equal bf16 autocast over fp32 weights (within cuDNN's run-to-run spread)."""
    import copy

    from model.diffusion.ddim import DDIMConfig, sample
    from model.diffusion.network import ConditionedDenoiser
    from model.diffusion.precision import store_autocast_weights
    from tests.model.test_sampler_exactness import PerStepDenoiser, _model_and_inputs

    model, batch, clip, latent = _model_and_inputs()
    model = model.to(cuda)
    batch = {k: v.to(cuda) for k, v in batch.items()}
    clip, latent = clip.to(cuda), latent.to(cuda)
    cfg = model.cfg
    shape = (2, cfg.view_num, 4, cfg.latent_size, cfg.latent_size)

    def run(den, m):
        with torch.no_grad():
            return sample(den, shape, m.alphas_cumprod.cpu().numpy(), DDIMConfig(steps=3, seed=5), device="cuda")

    ref_den = PerStepDenoiser(model, batch, clip, latent, {"clip": 1.0, "volume": 1.0, "concat": 1.0})
    torch.testing.assert_close(run(ConditionedDenoiser(model, batch, clip, latent), model), run(ref_den, model),
                               rtol=1e-4, atol=1e-4)
    stored = copy.deepcopy(model)
    store_autocast_weights(stored, torch.bfloat16)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        a = run(ConditionedDenoiser(model, batch, clip, latent), model)
        b = run(ConditionedDenoiser(stored, batch, clip, latent), stored)
    torch.testing.assert_close(a, b, rtol=1e-2, atol=1e-2)
