"""Single-image FLAME fit: synthetic views with known landmarks, the three real test faces, and no-face errors."""
import numpy as np
import pytest

from model import frames
from model.bodies.flame import load_flame_landmarks, load_flame_model
from model.tracking.landmarks2d import NoFaceError
from model.tracking.single_image import fit_flame_to_image
from tests.conftest import TESTDATA


@pytest.fixture(scope="module")
def flame(standin_settings):
    return load_flame_model(standin_settings.flame_model_dir), load_flame_landmarks(standin_settings.flame_model_dir)


def _ground_truth_pixels(settings, subject, expr, view):
    import cv2

    from storage.facescape import FaceScapeDataset

    ds = FaceScapeDataset(settings.facescape_root, settings.facescape_rt_scale_dict)
    tup = ds.tuple(subject, expr)
    cam = tup.cameras[view]
    scale, align = ds.alignment(subject, tup.expression_index)
    gt = np.load(settings.synthetic_root / "ground_truth" / "facescape" / subject / f"{expr}.npz")
    rt = frames.sfm_to_tu_extrinsics(cam.Rt, scale, align)
    pts = 1000 * gt["tu_scale"] * gt["flame_landmarks68"]
    pix = cv2.projectPoints(pts, cv2.Rodrigues(rt[:, :3])[0], rt[:, 3], cam.K, cam.distortion)[0].reshape(-1, 2)
    return ds.read_image(tup, view), pix


@pytest.mark.numerics
@pytest.mark.parametrize("subject,expr", [("3", "2_smile"), ("2", "6_jaw_right"), ("2", "2_smile")])
def test_synthetic_view_fit_reprojects_within_two_percent(flame, standin_settings, subject, expr):
    image, truth = _ground_truth_pixels(standin_settings, subject, expr, 7)  # view 7: frontal camera
    fit = fit_flame_to_image(*flame, image)
    err = np.linalg.norm(fit.landmarks_projected - truth, axis=1).mean()
    assert err < 0.02 * max(image.shape[:2]), err
    assert np.all(np.isfinite(fit.vertices))


@pytest.mark.numerics
@pytest.mark.parametrize("name", ["stylegan1_256.png", "stylegan2_256.png", "astronaut"])
def test_real_faces(flame, name):
    if name == "astronaut":
        import skimage.data

        image = skimage.data.astronaut()
    else:
        from storage.images import read_rgb

        image = read_rgb(TESTDATA / name)
    fit = fit_flame_to_image(*flame, image)
    # the synthetic stand-in FLAME has 12 identity components: a coarse but real fit (see docs/benchmarks.md)
    assert fit.relative_error < 0.04, fit.relative_error
    face = np.ptp(fit.landmarks_detected, axis=0).max()
    assert fit.pixel_error < 0.06 * face
    assert np.isfinite(fit.vertices).all() and fit.vertices.shape == (1922, 3)


def test_no_face_is_a_clear_error(flame):
    with pytest.raises(NoFaceError, match="no face found"):
        fit_flame_to_image(*flame, np.full((256, 256, 3), 127, np.uint8), source="grey.png")


def test_fit_image_stage_writes_mesh_and_params(standin_settings, tmp_path):
    import json

    from pipelines.fit_image import fit_image
    from storage.meshes import read_obj

    src = standin_settings.facescape_root / "1" / "1_neutral" / "7.jpg"
    out = fit_image(standin_settings, src, tmp_path / "fit")
    assert read_obj(out.mesh_path).vertices.shape == (1922, 3)
    params = json.loads(out.params_path.read_text())
    assert params["reprojection_error_px"] == pytest.approx(out.fit.pixel_error)
    assert out.overlay_path.is_file()
