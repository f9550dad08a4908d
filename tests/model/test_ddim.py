"""Schedule and DDIM sampler against closed-form references."""
import numpy as np
import pytest
import torch

from model.diffusion.ddim import DDIMConfig, ddim_coefficients, ddim_step, ddim_timesteps, guided_eps, sample
from model.diffusion.schedule import q_sample, schedule_arrays


def test_schedule_matches_the_scaled_linear_definition():
    s = schedule_arrays()
    betas = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000) ** 2
    np.testing.assert_allclose(s["betas"], betas, rtol=1e-6)
    np.testing.assert_allclose(s["alphas_cumprod"], np.cumprod(1 - betas), rtol=1e-5)
    assert all(v.dtype == np.float32 and v.shape == (1000,) for v in s.values()) and len(s) == 7
    x0, n = torch.ones(2, 3), torch.zeros(2, 3)
    out = q_sample(x0, n, torch.tensor([0, 999]), torch.tensor(s["alphas_cumprod"]))
    np.testing.assert_allclose(out[:, 0].numpy(), np.sqrt(s["alphas_cumprod"][[0, 999]]), rtol=1e-6)


@pytest.mark.parametrize("steps", [20, 30, 50, 200])
def test_released_timestep_selection_for_any_step_count(steps):
    """Closed form of ldm's "uniform" discretisation: range(0, 1000, 1000 // steps) + 1."""
    c = 1000 // steps
    expected = [k * c + 1 for k in range(-(-1000 // c))]
    np.testing.assert_array_equal(ddim_timesteps(steps), expected)
    assert len(expected) == {20: 20, 30: 31, 50: 50, 200: 200}[steps]


def test_a_selection_reaching_t_1000_drops_it():
    """3 steps: the release selects [1, 334, 667, 1000] and fails indexing t = 1000; we keep the valid three."""
    np.testing.assert_array_equal(ddim_timesteps(3), [1, 334, 667])


def test_posterior_log_variance_is_clamped_as_released():
    betas = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000) ** 2
    ac = np.cumprod(1 - betas)
    var = betas * (1 - np.append(1.0, ac[:-1])) / (1 - ac)
    expected = np.maximum(np.log(np.maximum(var, 1e-20)), -10.0)
    buffer = schedule_arrays()["posterior_log_variance_clipped"]
    np.testing.assert_allclose(buffer, expected, rtol=1e-6)
    assert buffer[0] == -10.0 and np.log(1e-20) < -10 and np.all(buffer[1:] > -10)


def test_a_30_step_run_visits_31_timesteps():
    seen = []

    class Recorder:
        def begin_step(self, x, t):
            seen.append(int(t[0]))

        def eps(self, state, x, t, views, cond):
            return torch.zeros_like(x)

    sample(Recorder(), (1, 2, 4, 2, 2), schedule_arrays()["alphas_cumprod"], DDIMConfig(steps=30, cfg_scale=1.0))
    assert seen == list(range(991, 0, -33)) and len(seen) == 31


def test_released_timesteps_and_coefficients():
    np.testing.assert_array_equal(ddim_timesteps(50)[:3], [1, 21, 41])
    assert ddim_timesteps(50)[-1] == 981
    ac = schedule_arrays()["alphas_cumprod"].astype(np.float64)
    c = ddim_coefficients(ac, DDIMConfig())
    assert c["alpha_prev"][0] == pytest.approx(ac[0])  # released quirk: not 1
    assert c["alpha_prev"][1] == pytest.approx(ac[1])  # previous of tau_1 = 21 is tau_0 = 1
    fixed = ddim_coefficients(ac, DDIMConfig(final_alpha_is_one=True, eta=0.0))
    assert fixed["alpha_prev"][0] == 1.0 and np.all(fixed["sigma"] == 0)


@pytest.mark.numerics
def test_ddim_step_closed_form():
    x, eps, z = torch.randn(3, 4), torch.randn(3, 4), torch.randn(3, 4)
    a, ap, s = 0.3, 0.6, 0.2
    x0 = (x - np.sqrt(1 - a) * eps) / np.sqrt(a)
    ref = np.sqrt(ap) * x0 + np.sqrt(1 - ap - s * s) * eps + s * z
    torch.testing.assert_close(ddim_step(x, eps, a, ap, s, z), ref)


class _Oracle:
    """Predicts the exact noise for a known clean latent: eps = (x - sqrt(a) x0) / sqrt(1 - a)."""

    def __init__(self, x0, ac, cond_shift=0.0):
        self.x0, self.ac, self.shift, self.calls = x0, torch.tensor(ac, dtype=torch.float64), cond_shift, []

    def begin_step(self, x, t):
        self.calls.append(("step", int(t[0])))
        return None

    def eps(self, state, x, t, views, conditional):
        self.calls.append(("eps", len(views), conditional))
        a = self.ac[t].reshape(-1, 1, 1, 1, 1).to(x.dtype)
        e = (x - a.sqrt() * self.x0[:, views]) / (1 - a).sqrt()
        return e + (self.shift if conditional else 0.0)


@pytest.mark.numerics
def test_deterministic_ddim_recovers_the_clean_latent():
    ac = schedule_arrays()["alphas_cumprod"].astype(np.float64)
    x0 = torch.randn(1, 16, 4, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    cfg = DDIMConfig(eta=0.0, final_alpha_is_one=True, cfg_scale=1.0, steps=20)
    out = sample(_Oracle(x0, ac), tuple(x0.shape), ac, cfg, dtype=torch.float64)
    # exact up to the update's sqrt(max(., 1e-7)) floor on the noise coefficient (3.2e-4 x eps)
    assert (out - x0).abs().max() < 2e-3
    released = sample(_Oracle(x0, ac), tuple(x0.shape), ac, DDIMConfig(eta=0.0, cfg_scale=1.0, steps=20),
                      dtype=torch.float64)
    assert (released - x0).abs().max() > 1e-2  # the released final step stops at alphas_cumprod[0]


@pytest.mark.numerics
def test_cfg_combination_chunking_and_seed():
    ac = schedule_arrays()["alphas_cumprod"].astype(np.float64)
    x0 = torch.zeros(2, 16, 4, 4, 4, dtype=torch.float64)
    model = _Oracle(x0, ac, cond_shift=0.5)
    eps = guided_eps(model, None, torch.ones(2, 4, 4, 4, 4, dtype=torch.float64), torch.tensor([1, 1]),
                     torch.arange(4), 2.0)
    uncond = model.eps(None, torch.ones(2, 4, 4, 4, 4, dtype=torch.float64), torch.tensor([1, 1]), torch.arange(4),
                       False)
    torch.testing.assert_close(eps, uncond + 2.0 * 0.5)  # eps_u + s (eps_c - eps_u)
    a = sample(_Oracle(x0, ac, 0.1), (2, 16, 4, 4, 4), ac, DDIMConfig(steps=5, batch_view_num=4), dtype=torch.float64)
    b = sample(_Oracle(x0, ac, 0.1), (2, 16, 4, 4, 4), ac, DDIMConfig(steps=5, batch_view_num=16),
               dtype=torch.float64)
    torch.testing.assert_close(a, b)  # chunking does not change a view-independent model's result
    c = sample(_Oracle(x0, ac, 0.1), (2, 16, 4, 4, 4), ac, DDIMConfig(steps=5, seed=1), dtype=torch.float64)
    assert not torch.allclose(a, c)
    m = _Oracle(x0[:1], ac)
    sample(m, (1, 16, 4, 4, 4), ac, DDIMConfig(steps=2, batch_view_num=8, cfg_scale=2.0), dtype=torch.float64)
    assert m.calls.count(("step", 501)) == 1 and m.calls.count(("step", 1)) == 1  # one volume per step
    assert m.calls.count(("eps", 8, True)) == 4 and m.calls.count(("eps", 8, False)) == 4


class _ZeroNoise:
    """Predicts eps = 0, so a DDIM step is x' = sqrt(a'/a) x + sigma z: linear, and the noise it adds is visible."""

    def __init__(self):
        self.seen = {}

    def begin_step(self, x, t):
        self.seen[int(t[0])] = x.clone()

    def eps(self, state, x, t, views, conditional):
        return torch.zeros_like(x)


@pytest.mark.numerics
def test_a_warm_start_runs_the_last_steps_with_the_fresh_runs_noise():
    from model.diffusion.ddim import warm_start_steps

    ac = schedule_arrays()["alphas_cumprod"].astype(np.float64)
    cfg = DDIMConfig(steps=20, cfg_scale=1.0)
    shape = (1, 16, 4, 4, 4)
    init = torch.randn(shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    fresh_model, warm_model = _ZeroNoise(), _ZeroNoise()
    fresh = sample(fresh_model, shape, ac, cfg, dtype=torch.float64)
    assert torch.equal(sample(_ZeroNoise(), shape, ac, cfg, dtype=torch.float64, init=init, strength=1.0), fresh)
    warm = sample(warm_model, shape, ac, cfg, dtype=torch.float64, init=init, strength=0.3)
    coef = ddim_coefficients(ac, cfg)
    k = warm_start_steps(cfg, len(ac), 0.3)
    assert k == 6 and sorted(warm_model.seen) == sorted(coef["timesteps"][:k].tolist())
    first = int(coef["timesteps"][k - 1])
    a = coef["alpha"][k - 1]
    z0 = torch.randn(shape, generator=torch.Generator().manual_seed(cfg.seed), dtype=torch.float64)
    torch.testing.assert_close(warm_model.seen[first], a ** 0.5 * init + (1 - a) ** 0.5 * z0)
    # the steps that run are linear and add the same noise in both runs, so the two finals differ by the starting
    # difference scaled by prod sqrt(a' / a): any misaligned noise draw would show here
    scale = float(np.prod(np.sqrt(coef["alpha_prev"][:k] / coef["alpha"][:k])))
    torch.testing.assert_close(warm - fresh, scale * (warm_model.seen[first] - fresh_model.seen[first]))
    with pytest.raises(ValueError, match="strength"):
        warm_start_steps(cfg, len(ac), 0.0)
    with pytest.raises(ValueError, match="do not match"):
        sample(_ZeroNoise(), shape, ac, cfg, init=init[:, :8], strength=0.5)
