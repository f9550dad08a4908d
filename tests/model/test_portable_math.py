"""model.portable_math and model.bodies.portable_lbs: as accurate as numpy / torch, and the same bits under another
CPU's kernels (checked in a child process that computes like an SSE4.2-only CPU)."""
import json
import subprocess
import sys

import numpy as np
import pytest

from model import portable_math as pm
from tests.conftest import REPO
from tests.other_cpu import OLD_CPU_ONE_THREAD, environment

RNG = np.random.default_rng(7)
X = RNG.uniform(-60, 60, 50_000)
UNIT = RNG.uniform(-1, 1, 50_000)


@pytest.mark.parametrize("name, ours, ref, arg, atol, rtol", [
    ("sin", pm.sin, np.sin, X, 2.3e-16, 0), ("cos", pm.cos, np.cos, X, 2.3e-16, 0),
    ("exp", pm.exp, np.exp, RNG.uniform(-700, 700, 50_000), 0, 4.5e-16),
    ("log", pm.log, np.log, np.exp(RNG.uniform(-700, 700, 50_000)), 0, 4.5e-16),
    ("arcsin", pm.arcsin, np.arcsin, UNIT, 9e-16, 0), ("arccos", pm.arccos, np.arccos, UNIT, 1.8e-15, 0),
    ("arctan", pm.arctan, np.arctan, X, 9e-16, 0),
])
def test_elementary_functions_agree_with_numpy(name, ours, ref, arg, atol, rtol):
    np.testing.assert_allclose(ours(arg), ref(arg), atol=atol, rtol=rtol, err_msg=name)


def test_two_argument_functions_and_edge_cases():
    y, x = RNG.normal(size=50_000), RNG.normal(size=50_000)
    np.testing.assert_allclose(pm.arctan2(y, x), np.arctan2(y, x), atol=9e-16, rtol=0)
    zeros = np.array([0.0, -0.0, 1.0, -1.0])
    a, b = np.meshgrid(zeros, zeros)
    np.testing.assert_allclose(pm.arctan2(a, b), np.arctan2(a, b), atol=3e-16)
    assert np.array_equal(np.signbit(pm.arctan2(a, b)), np.signbit(np.arctan2(a, b)))
    p = RNG.uniform(0, 3, 50_000)
    np.testing.assert_allclose(pm.power(p, 1.4), p ** 1.4, rtol=3e-15)
    np.testing.assert_allclose(pm.int_power(p, 30), p ** 30, rtol=4e-15)
    np.testing.assert_allclose(pm.hypot(y, x), np.hypot(y, x), rtol=4e-16)
    assert pm.exp(np.array([-1e4]))[0] == 0.0 and np.isinf(pm.exp(np.array([800.0]))[0])
    assert np.isnan(pm.exp(np.array([np.nan]))[0]) and pm.log(np.array([0.0]))[0] == -np.inf
    assert np.isnan(pm.log(np.array([-1.0]))[0]) and pm.power(np.array([0.0]), 1.4)[0] == 0.0
    with pytest.raises(ValueError, match="1e5"):
        pm.sin(np.array([2e5]))


def test_linear_algebra_agrees_with_lapack():
    a, b = RNG.normal(size=(6, 6)), RNG.normal(size=6)
    np.testing.assert_allclose(pm.solve(a, b), np.linalg.solve(a, b), atol=1e-13)
    q = pm.orthonormal_columns(RNG.normal(size=(45, 45)))
    np.testing.assert_allclose(q.T @ q, np.eye(45), atol=1e-14)
    m, n = RNG.normal(size=(4, 7, 3)), RNG.normal(size=(3, 5))
    np.testing.assert_allclose(pm.matmul(m, n), m @ n, atol=1e-14)
    np.testing.assert_allclose(pm.norm(m, axis=1), np.linalg.norm(m, axis=1), rtol=1e-15)
    np.testing.assert_allclose(pm.cross(m[0], m[1]), np.cross(m[0], m[1]), atol=1e-15)
    with pytest.raises(np.linalg.LinAlgError):
        pm.solve(np.zeros((3, 3)), np.ones(3))


def test_rodrigues_equals_smplx():
    import torch
    from smplx.lbs import batch_rodrigues

    aa = RNG.normal(size=(64, 3))
    aa[0] = 0.0
    np.testing.assert_allclose(pm.rodrigues(aa), batch_rodrigues(torch.tensor(aa)).numpy(), atol=1e-15)


def test_mesh_helpers_against_independent_references():
    import open3d as o3d
    import trimesh

    sphere = trimesh.creation.icosphere(subdivisions=3)
    v, f = np.asarray(sphere.vertices), np.asarray(sphere.faces)
    v = v * [1.0, 1.3, 0.8]  # an ellipsoid: faces of unequal areas
    weighted = trimesh.geometry.mean_vertex_normals(len(v), f, np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]))
    np.testing.assert_allclose(pm.vertex_normals(v, f), weighted, atol=1e-12)  # area-weighted, by trimesh
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(v.astype(np.float32)), o3d.core.Tensor(f.astype(np.uint32)))
    pts = RNG.normal(size=(200, 3)) * 0.8
    ref = scene.compute_closest_points(o3d.core.Tensor(pts.astype(np.float32)))
    face, bary = pm.closest_points_on_mesh(v, f, pts)
    ours = np.einsum("nk,nkc->nc", bary, v[f[face]])  # as close as open3d's (points may differ at near-ties)
    np.testing.assert_allclose(pm.norm(ours - pts, axis=1), pm.norm(ref["points"].numpy() - pts, axis=1), atol=2e-6)
    assert np.all(bary >= -1e-12) and np.allclose(bary.sum(1), 1.0)
    origins = np.zeros((100, 3)) + [0.0, 0.0, 3.0]
    dirs = RNG.normal(size=(100, 3)) * 0.1 + [0.0, 0.0, -1.0]
    dirs /= pm.norm(dirs, axis=1, keepdims=True)
    ans = scene.cast_rays(o3d.core.Tensor(np.concatenate([origins, dirs], 1).astype(np.float32)))
    hit = ans["primitive_ids"].numpy() != 4294967295
    t, b = pm.ray_triangle_hits(origins[hit], dirs[hit], v[f[ans["primitive_ids"].numpy()[hit].astype(np.int64)]])
    np.testing.assert_allclose(t, ans["t_hit"].numpy()[hit], rtol=1e-6)
    assert np.all(b > -1e-6) and np.allclose(b.sum(1), 1.0)


def test_flame_forward_equals_the_torch_layer(standin_settings):
    import torch

    from model.bodies.flame import load_flame_landmarks, load_flame_model
    from model.bodies.flame_layer import build_flame_layer
    from model.bodies.portable_lbs import flame_forward

    model = load_flame_model(standin_settings.flame_model_dir / "generic_model.pkl")
    lmk = load_flame_landmarks(standin_settings.flame_model_dir)
    layer = build_flame_layer(model, lmk, dtype=torch.float64)
    for yaw in (0.0, 0.4, -0.6, 1.2):  # the dynamic contour's row follows the neck chain's yaw
        p = {"shape": RNG.normal(size=300), "expression": RNG.normal(size=100), "global_orient": [0.1, yaw, 0.05],
             "neck_pose": RNG.normal(scale=0.2, size=3), "jaw_pose": [0.2, 0.01, 0.0],
             "eye_pose": RNG.normal(scale=0.1, size=6), "transl": RNG.normal(size=3)}
        p = {k: np.asarray(v, float) for k, v in p.items()}
        with torch.no_grad():
            ref = layer(**{k: torch.tensor(v[None]) for k, v in p.items()})
        verts, landmarks = flame_forward(model, p, lmk)
        np.testing.assert_allclose(verts, ref.vertices[0].numpy(), atol=1e-12)
        np.testing.assert_allclose(landmarks, ref.landmarks[0].numpy(), atol=1e-12)


def test_smplx_forward_equals_smplx(standin_settings):
    """smplx rounds the model's template, bases, regressor and weights to float32 when it loads them (its to_np);
    given the same rounded arrays, ours computes what smplx.SMPLX computes in float64."""
    import torch

    from model.bodies.portable_lbs import smplx_forward
    from model.bodies.smplx_body import THUMAN_SMPLX_KWARGS, load_smplx, read_smplx_arrays, smplx_model_file

    model = load_smplx(standin_settings.smplx_model_dir, dtype=torch.float64, **THUMAN_SMPLX_KWARGS)
    arrays = dict(read_smplx_arrays(smplx_model_file(standin_settings.smplx_model_dir, "male")))
    for key in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights"):
        arrays[key] = np.asarray(arrays[key]).astype(np.float32).astype(np.float64)
    p = {"betas": RNG.normal(size=10), "expression": RNG.normal(size=10), "global_orient": RNG.normal(size=3),
         "body_pose": RNG.normal(scale=0.3, size=63), "left_hand_pose": RNG.normal(size=12),
         "right_hand_pose": RNG.normal(size=12), "jaw_pose": RNG.normal(scale=0.1, size=3),
         "leye_pose": RNG.normal(scale=0.1, size=3), "reye_pose": RNG.normal(scale=0.1, size=3)}
    with torch.no_grad():
        ref = model(**{k: torch.tensor(v[None]) for k, v in p.items()}).vertices[0].numpy()
    np.testing.assert_allclose(smplx_forward(arrays, p), ref, atol=1e-12)


_PROBE = """
import hashlib, json, sys
import numpy as np
from model import portable_math as pm
rng = np.random.default_rng(3)
x, y = rng.uniform(-40, 40, 20000), rng.normal(size=20000)
out = [pm.sin(x), pm.cos(x), pm.exp(x), pm.log(np.abs(x)), pm.arctan2(y, x), pm.arcsin(y / 5), pm.power(np.abs(x), 1.4),
       pm.matmul(rng.normal(size=(300, 3)), rng.normal(size=(3, 3))), pm.norm(rng.normal(size=(500, 3)), axis=1),
       pm.solve(rng.normal(size=(5, 5)), rng.normal(size=5)), pm.orthonormal_columns(rng.normal(size=(20, 20))),
       pm.rodrigues(rng.normal(size=(30, 3)))]
print(json.dumps([hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest() for a in out]))
"""


@pytest.mark.numerics
def test_the_same_bits_under_another_cpus_kernels():
    native = subprocess.run([sys.executable, "-c", _PROBE], cwd=REPO, capture_output=True, text=True,
                            env=environment({}), check=True).stdout
    other = subprocess.run([sys.executable, "-c", _PROBE], cwd=REPO, capture_output=True, text=True,
                           env=environment(OLD_CPU_ONE_THREAD), check=True).stdout
    assert json.loads(native) == json.loads(other)
    if not _numpy_has("AVX512F"):
        return
    # the probe is sensitive: on an AVX-512 CPU numpy's own exp / power differ under this emulation
    probe_np = _PROBE.replace("pm.exp(x)", "np.exp(x)").replace("pm.power(np.abs(x), 1.4)", "np.abs(x) ** 1.4")
    a = subprocess.run([sys.executable, "-c", probe_np], cwd=REPO, capture_output=True, text=True,
                       env=environment({}), check=True).stdout
    b = subprocess.run([sys.executable, "-c", probe_np], cwd=REPO, capture_output=True, text=True,
                       env=environment(OLD_CPU_ONE_THREAD), check=True).stdout
    assert json.loads(a) != json.loads(b)


def _numpy_has(feature: str) -> bool:
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:
        return False
    return bool(__cpu_features__.get(feature))
