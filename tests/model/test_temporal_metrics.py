"""Temporal metrics against closed forms: a plane seen by a pinhole camera, moved sideways, textured in ways whose
warping error and flicker follow from the motion alone."""
import numpy as np
import pytest

from model.metrics.temporal import flicker, mesh_flow, warp, warping_error, warping_errors

F, W, H, Z = 40.0, 32, 24, 2.0
K = np.array([[F, 0, (W - 1) / 2], [0, F, (H - 1) / 2], [0, 0, 1.0]])
RT = np.concatenate([np.eye(3), np.zeros((3, 1))], 1)  # camera at the origin looking down +z


def plane(dx: float = 0.0, n: int = 9, half: float = 3.0):
    """A fronto-parallel plane at depth Z, larger than the view, shifted by dx along x."""
    g = np.linspace(-half, half, n)
    x, y = np.meshgrid(g, g)
    v = np.stack([x.ravel() + dx, y.ravel(), np.full(x.size, Z)], -1)
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    return v, np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])


def test_the_flow_of_a_sideways_move_is_the_pinhole_shift():
    shift = 0.1  # metres at depth Z: F * 0.1 / Z = 2 pixels
    (v0, f), (v1, _) = plane(0.0), plane(shift)
    flow = mesh_flow(v0, v1, f, K, RT, W, H, occlusion_tolerance=1e-6)
    u, vv = np.meshgrid(np.arange(W, dtype=float), np.arange(H, dtype=float))
    assert np.allclose(flow.source[..., 0][flow.valid], (u - F * shift / Z)[flow.valid], atol=1e-9)
    assert np.allclose(flow.source[..., 1][flow.valid], vv[flow.valid], atol=1e-9)
    # valid: every pixel whose source lies between the outer pixel centres (the 2 leftmost columns do not)
    assert flow.valid[:, 2:].all() and not flow.valid[:, :2].any()


def test_the_orthographic_flow_of_a_sideways_move_is_the_scaled_shift():
    """The THuman views' parallel projection: a plane moved by dx shifts by dx x size / ortho_scale pixels at every
    depth, and a texture attached to it warps with zero error."""
    from model.metrics.temporal import flow_from_hits
    from model.render.orthographic import ORTHO_SCALE, ortho_projection
    from model.render.raycast import MeshRaycaster

    size, shift = 32, 0.075  # 0.075 x 32 / 1.2 = 2 pixels
    (v0, f), (v1, _) = plane(0.0, half=1.0), plane(shift, half=1.0)
    before, now = MeshRaycaster(v0, f).cast_orthographic(RT, size), MeshRaycaster(v1, f).cast_orthographic(RT, size)
    assert now.mask.all() and np.allclose(now.depth[now.mask], Z)
    flow = flow_from_hits(now, before, v0, f, ortho_projection(), RT, 1e-6, projection="orthographic")
    u, vv = np.meshgrid(np.arange(size, dtype=float), np.arange(size, dtype=float))
    expected = shift * size / ORTHO_SCALE
    assert np.allclose(flow.source[..., 0][flow.valid], (u - expected)[flow.valid], atol=1e-9)
    assert np.allclose(flow.source[..., 1][flow.valid], vv[flow.valid], atol=1e-9)
    assert flow.valid[:, 2:].all() and not flow.valid[:, :2].any()
    attached = np.stack([0.5 + 0.1 * (h.points[..., 0] - s) for h, s in ((before, 0.0), (now, shift))])
    assert warping_error(attached, [flow]) < 1e-24


def test_a_texture_that_moves_with_the_mesh_has_no_warping_error_and_one_stuck_to_the_screen_has_its_slope():
    from model.render.raycast import MeshRaycaster

    shifts = [0.0, 0.05, 0.1, 0.2]
    meshes = [plane(s) for s in shifts]
    attached = []
    for (v, f), s in zip(meshes, shifts):
        hits = MeshRaycaster(v, f).cast(K, RT, W, H)
        attached.append(0.5 + 0.1 * (hits.points[..., 0] - s))  # colour fixed to the surface point
    flows = [mesh_flow(meshes[t - 1][0], meshes[t][0], meshes[0][1], K, RT, W, H, 1e-6) for t in range(1, 4)]
    assert warping_error(np.stack(attached), flows) < 1e-24  # linear in the pixel: bilinear reads it exactly

    slope = 0.01  # per pixel: the same image every frame while the mesh moves
    stuck = np.stack([0.2 + slope * np.arange(W)[None].repeat(H, 0)] * 4)
    pixels = [F * (shifts[t] - shifts[t - 1]) / Z for t in range(1, 4)]
    assert np.allclose(warping_errors(stuck, flows), [(slope * p) ** 2 for p in pixels], rtol=1e-9)


def test_a_static_sequence_with_changing_offsets():
    v, f = plane()
    offsets = np.array([0.1, 0.3, 0.25, 0.6])
    rng = np.random.default_rng(0)
    base = rng.uniform(0.1, 0.3, (H, W, 3))
    frames = np.stack([base + c for c in offsets])
    flows = [mesh_flow(v, v, f, K, RT, W, H, 1e-6)] * 3
    assert all(fl.valid.all() for fl in flows)  # nothing moved: every pixel is its own source
    assert np.allclose(warping_errors(frames, flows), np.diff(offsets) ** 2, rtol=1e-9)
    assert flicker(frames, np.ones((H, W), bool)) == pytest.approx(np.abs(np.diff(offsets)).mean(), rel=1e-12)
    half = np.zeros((H, W), bool)
    half[:, : W // 2] = True
    frames[:, :, W // 2:] = rng.uniform(0, 1, (4, H, W - W // 2, 3))  # outside the static mask: ignored
    assert flicker(frames, half) == pytest.approx(np.abs(np.diff(offsets)).mean(), rel=1e-12)


def test_occluded_points_are_not_compared():
    """A second plane in front of the left half at t-1 only: what it hid at t-1 is not valid at t."""
    v, f = plane()
    blocker_v, blocker_f = plane(n=3, half=0.5)
    blocker_v = blocker_v * [1, 1, 0.5] + [-0.6, 0, 0]  # depth Z/2, covering x in [-1.1, -0.1] at depth 1
    both_v = np.concatenate([v, blocker_v])
    both_f = np.concatenate([f, blocker_f + len(v)])
    gone_v = np.concatenate([v, blocker_v + [0, 0, 100.0]])  # at t the blocker is far behind the plane
    flow = mesh_flow(both_v, gone_v, both_f, K, RT, W, H, occlusion_tolerance=1e-6)
    u = np.arange(W) - (W - 1) / 2
    hidden = (u * Z / F > -1.1 * Z) & (u * Z / F < -0.1 * Z)  # columns the blocker covered at t-1 (on the plane)
    rows = slice(H // 2 - 2, H // 2 + 2)
    assert not flow.valid[rows][:, hidden].any()
    assert flow.valid[rows][:, ~hidden].all()


def test_bad_inputs_are_refused():
    v, f = plane()
    flow = mesh_flow(v, v, f, K, RT, W, H, 1e-6)
    with pytest.raises(ValueError, match="3 frames need 2 flows"):
        warping_errors(np.zeros((3, H, W)), [flow])
    with pytest.raises(ValueError, match="NaN"):
        flicker(np.full((2, H, W), np.nan), np.ones((H, W), bool))
    with pytest.raises(ValueError, match="differ in shape"):
        mesh_flow(v, v[:-1], f, K, RT, W, H, 1e-6)
    assert np.allclose(warp(np.arange(W, dtype=float)[None].repeat(H, 0), flow.source), np.arange(W)[None])
