"""Network parts against independent references: attention, projection, frustum, our checkpoint format."""
import numpy as np
import pytest
import torch

from model.diffusion.attention import CrossAttention, DepthAttention
from model.diffusion.volume import frustum_points, grid_points, project_normalized
from model.render.cameras import look_at


@pytest.mark.numerics
def test_cross_attention_equals_naive_softmax_attention():
    torch.manual_seed(0)
    attn = CrossAttention(12, 6, heads=3, dim_head=4).double()
    x, ctx = torch.randn(2, 5, 12, dtype=torch.float64), torch.randn(2, 7, 6, dtype=torch.float64)
    q, k, v = attn.to_q(x), attn.to_k(ctx), attn.to_v(ctx)
    split = lambda t: t.reshape(2, -1, 3, 4).transpose(1, 2)  # noqa: E731
    w = torch.softmax(split(q) @ split(k).transpose(-1, -2) / 2.0, dim=-1)  # d_head^-0.5 = 1/2
    ref = attn.to_out((w @ split(v)).transpose(1, 2).reshape(2, 5, 12))
    torch.testing.assert_close(attn(x, ctx), ref)


@pytest.mark.numerics
def test_depth_attention_equals_the_released_formula():
    torch.manual_seed(1)
    att = DepthAttention(8, 6, heads=2, dim_head=4).double()
    x, ctx = torch.randn(2, 8, 3, 5, dtype=torch.float64), torch.randn(2, 6, 7, 3, 5, dtype=torch.float64)
    q = att.to_q(x).reshape(2, 2, 4, 1, 3, 5)
    k = att.to_k(ctx).reshape(2, 2, 4, 7, 3, 5)
    v = att.to_v(ctx).reshape(2, 2, 4, 7, 3, 5)
    a = torch.softmax((q * k).sum(2) * 4 ** -0.5, dim=2)  # (b, h, D, H, W): softmax over depth
    out = (a[:, :, None] * v).sum(3).reshape(2, 8, 3, 5)
    torch.testing.assert_close(att(x, ctx), att.to_out(out))


def _camera(image=256):
    rt = look_at(np.array([0.3, 0.2, 4.0]), np.zeros(3))
    k = np.eye(4)
    k[:3, :3] = [[1500.0, 0, 128], [0, 1500.0, 120], [0, 0, 1]]
    return torch.tensor(k)[None], torch.tensor(rt)[None]


def test_perspective_projection_closed_form():
    k, rt = _camera()
    pts = torch.tensor([[[0.1, -0.05, 0.2], [0.0, 0.0, 0.0]]], dtype=torch.float64)
    cam = pts[0] @ rt[0, :, :3].T + rt[0, :, 3]
    pix = (cam @ k[0, :3, :3].T)[:, :2] / cam[:, 2:]
    expected = (pix * 32 / 256) / (31 / 2) - 1  # latent 32 of 256: K x 1/8, normalised by (L-1)/2
    torch.testing.assert_close(project_normalized(pts, k, rt, 32, 256, False)[0], expected)


def test_orthographic_projection_uses_blender_ndc():
    from model.render.orthographic import ortho_projection, target_cameras

    _, _, rts = target_cameras()
    k = torch.tensor(ortho_projection())[None]
    rt = torch.tensor(rts[:1])
    pts = torch.tensor([[[0.0, 0.6, 0.0], [0.0, 0.0, 0.6]]], dtype=torch.float64)  # view 0 looks from +x
    ndc = project_normalized(pts, k, rt, 32, 256, True)[0]
    torch.testing.assert_close(ndc, torch.tensor([[1.0, 0.0], [0.0, -1.0]], dtype=torch.float64))  # y down


def test_frustum_points_reproject_onto_their_pixels_and_span_the_unit_cube():
    k, rt = _camera()
    pts = frustum_points(k, rt, 32, 256, depth=5, half_length=0.86603, orthographic=False)  # (1, D, L, L, 3)
    norm = project_normalized(pts.reshape(1, -1, 3), k, rt, 32, 256, False).reshape(5, 32, 32, 2)
    u = torch.arange(32, dtype=torch.float64)
    torch.testing.assert_close(norm[2, 7, :, 0], u / 15.5 - 1)  # column index = u
    torch.testing.assert_close(norm[2, :, 9, 1], u / 15.5 - 1)  # row index = v
    centre = -(rt[0, :, :3].T @ rt[0, :, 3])
    depth = (pts[0] - centre) @ rt[0, 2, :3]
    d = centre.norm()
    torch.testing.assert_close(depth[0].mean(), d - 0.86603)
    torch.testing.assert_close(depth[-1].mean(), d + 0.86603)
    g = grid_points(4, 0.5)
    assert torch.allclose(g[0], torch.tensor([-0.5, -0.5, -0.5])) and torch.allclose(g[1], torch.tensor(
        [-0.5 + 1 / 3, -0.5, -0.5]))  # x varies fastest (w index)


def test_own_checkpoint_format_round_trip(tmp_path):
    from model.diffusion.config import ModelConfig, tiny
    from model.diffusion.network import MorphableDiffusion
    from storage.checkpoints import load_checkpoint, save_checkpoint

    model = MorphableDiffusion(tiny())
    folder = save_checkpoint(tmp_path, "tiny", model.state_dict(), {"model": json_config(model)})
    tensors, config = load_checkpoint(folder)
    assert ModelConfig.from_dict(config["model"]) == tiny()
    again = MorphableDiffusion(ModelConfig.from_dict(config["model"]))
    again.load_state_dict(tensors, strict=True)
    assert save_checkpoint(tmp_path, "tiny", again.state_dict(), {"model": json_config(again)}) == folder


def json_config(model):
    import dataclasses

    return dataclasses.asdict(model.cfg)
