"""The stand-in's model files load through our loaders and through smplx exactly like real files would."""
import pickle

import numpy as np
import pytest
import torch

from model.bodies.bilinear import load_bilinear_model
from model.bodies.errors import BodyModelError
from model.bodies.flame import load_flame_landmarks, load_flame_model, write_smplx_flame_dir
from model.bodies.flame_layer import build_flame_layer
from model.bodies.smplx_body import load_smplx, load_thuman_smplx, validate_smplx_file
from storage.thuman import THumanDataset


def test_flame_file_is_in_the_release_format(standin_settings):
    raw = (standin_settings.flame_model_dir / "generic_model.pkl").read_bytes()
    with pytest.raises((UnicodeDecodeError, ModuleNotFoundError)):
        pickle.loads(raw)
    model = load_flame_model(standin_settings.flame_model_dir)
    assert model.shapedirs.shape[1:] == (3, 400) and (model.n_shape, model.n_expression) == (300, 100)
    assert model.posedirs.shape[1:] == (3, 36) and model.parents.tolist() == [-1, 0, 1, 1, 1]
    np.testing.assert_allclose(model.weights.sum(1), 1.0, atol=1e-9)


def test_flame_forward_matches_smplx_flame(standin_settings, tmp_path):
    smplx = pytest.importorskip("smplx")
    model = load_flame_model(standin_settings.flame_model_dir)
    lmk = load_flame_landmarks(standin_settings.flame_model_dir)
    ref = smplx.FLAME(model_path=str(write_smplx_flame_dir(model, lmk, tmp_path / "flame")), num_expression_coeffs=10,
                      use_face_contour=True, batch_size=2)
    ours = build_flame_layer(model, lmk)
    g = torch.Generator().manual_seed(0)
    p = {"shape": torch.randn(2, 10, generator=g), "expression": torch.randn(2, 10, generator=g),
         "global_orient": 0.3 * torch.randn(2, 3, generator=g), "jaw_pose": 0.2 * torch.rand(2, 3, generator=g),
         "eye_pose": 0.1 * torch.randn(2, 6, generator=g), "neck_pose": torch.zeros(2, 3)}
    with torch.no_grad():
        a = ours(**p)
        b = ref(betas=p["shape"], expression=p["expression"], global_orient=p["global_orient"],
                jaw_pose=p["jaw_pose"], leye_pose=p["eye_pose"][:, :3], reye_pose=p["eye_pose"][:, 3:],
                neck_pose=p["neck_pose"])
    torch.testing.assert_close(a.vertices, b.vertices, atol=1e-6, rtol=0)
    # smplx returns 5 joints + 51 static landmarks + 17 contour points; ours are in dlib order (contour first)
    torch.testing.assert_close(a.landmarks[:, 17:], b.joints[:, 5:56], atol=1e-6, rtol=0)
    torch.testing.assert_close(a.landmarks[:, :17], b.joints[:, 56:], atol=1e-6, rtol=0)


def test_deca_and_ringnet_embeddings_agree(standin_settings, tmp_path):
    deca = load_flame_landmarks(standin_settings.flame_model_dir)
    for name in ("flame_static_embedding.pkl", "flame_dynamic_embedding.npy"):
        (tmp_path / name).write_bytes((standin_settings.flame_model_dir / name).read_bytes())
    ringnet = load_flame_landmarks(tmp_path)
    np.testing.assert_array_equal(deca.static_faces, ringnet.static_faces)
    np.testing.assert_allclose(deca.dynamic_bary, ringnet.dynamic_bary, atol=1e-6)
    assert deca.full_faces.shape == (68,) and ringnet.full_faces is None
    assert deca.dynamic_faces.shape == (79, 17)


def test_smplx_files_run_in_smplx_unmodified(standin_settings):
    smplx = pytest.importorskip("smplx")
    for gender in ("neutral", "male", "female"):
        info = validate_smplx_file(standin_settings.smplx_model_dir / f"SMPLX_{gender.upper()}.npz")
        assert info.num_vertices >= 9930 and not info.patched_keypoints and info.shapedirs_width == 400
        model = smplx.SMPLX(model_path=str(standin_settings.smplx_model_dir), gender=gender, num_betas=10)
        with torch.no_grad():
            out = model(betas=torch.ones(1, 10) * 0.5, body_pose=0.2 * torch.ones(1, 63))
        assert out.vertices.shape == (1, info.num_vertices, 3) and out.joints.shape == (1, 127, 3)
        assert torch.isfinite(out.vertices).all()


def test_thuman_fit_reproduces_the_released_fit_mesh(standin_settings):
    """scan frame = smplx(params) * scale + translation (the THuman convention), against mesh_smplx.obj."""
    ds = THumanDataset(standin_settings.thuman_root, standin_settings.thuman_smplx_fits)
    model = load_thuman_smplx(standin_settings.smplx_model_dir)
    for uid in ds.subjects():
        fit = ds.read_fit(uid)
        with torch.no_grad():
            v = model(**{k: torch.tensor(x) for k, x in fit.as_smplx_kwargs().items()}).vertices[0].numpy()
        ref = ds.read_fit_mesh(uid).vertices
        if int(uid) >= 526:
            ref = ref[:, [1, 2, 0]]  # z-up file -> y-up
        np.testing.assert_allclose(v * fit.scale + fit.translation, ref, atol=2e-5)


def test_bilinear_model_residual_core(standin_settings):
    bm = load_bilinear_model(standin_settings.facescape_bilinear_model)
    with np.load(standin_settings.facescape_bilinear_model) as z:
        stored = z["shape_bm_core"].astype(np.float64)
    ident = bm.id_mean.copy()
    ident[1:4] = [0.5, -1.0, 0.3]
    exp = np.zeros(52)
    exp[0] = 1.0
    np.testing.assert_allclose(bm.vertices(ident, exp), (stored[:, 0] @ ident).reshape(-1, 3), atol=1e-5)
    exp[3] = 1.0  # a full blendshape weight: the stored absolute slice of that expression
    np.testing.assert_allclose(bm.vertices(ident, exp), (stored[:, 3] @ ident).reshape(-1, 3), atol=1e-5)
    assert bm.landmark_indices.shape == (68,) and bm.landmark_indices.max() < bm.num_vertices
    assert bm.faces.min() == 0


def test_body_model_errors_are_named(tmp_path, standin_settings):
    with pytest.raises(BodyModelError, match="generic_model.pkl.*not found"):
        load_flame_model(tmp_path)
    with np.load(standin_settings.smplx_model_dir / "SMPLX_NEUTRAL.npz", allow_pickle=True) as z:
        data = {k: z[k] for k in z.files}
    data["posedirs"] = data["posedirs"][:, :, :100]
    np.savez(tmp_path / "SMPLX_NEUTRAL.npz", **data)
    with pytest.raises(BodyModelError, match="posedirs.*expected"):
        load_smplx(tmp_path)


def test_flame_landmarks_alone_equal_the_full_forwards(standin_settings):
    """The landmark-only skinning (what the fit's landmark stage runs) against the full forward, at random
    shape, expression and poses, with the components a fit keeps."""
    import torch

    model = load_flame_model(standin_settings.flame_model_dir)
    lmk = load_flame_landmarks(standin_settings.flame_model_dir)
    g = torch.Generator().manual_seed(0)
    for n_shape, n_expression in ((None, None), (model.n_shape // 2, model.n_expression // 2)):
        layer = build_flame_layer(model, lmk, dtype=torch.float64, n_shape=n_shape, n_expression=n_expression)
        kwargs = {"shape": torch.randn(3, model.n_shape, generator=g, dtype=torch.float64),
                  "expression": torch.randn(3, model.n_expression, generator=g, dtype=torch.float64),
                  "jaw_pose": 0.2 * torch.randn(3, 3, generator=g, dtype=torch.float64),
                  "neck_pose": 0.3 * torch.randn(3, 3, generator=g, dtype=torch.float64),
                  "eye_pose": 0.1 * torch.randn(3, 6, generator=g, dtype=torch.float64),
                  "global_orient": 0.3 * torch.randn(3, 3, generator=g, dtype=torch.float64)}
        full = layer(**kwargs).landmarks
        alone = layer.landmarks(**kwargs)
        assert full.shape == alone.shape == (3, 68, 3)
        torch.testing.assert_close(alone, full, rtol=0, atol=1e-12)
