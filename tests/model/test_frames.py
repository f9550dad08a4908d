"""The frame module: round trips, projection invariance, and the released real camera trajectory."""

import numpy as np
import pytest

from model import frames
from tests.conftest import TESTDATA


def _rand_rt(rng):
    from scipy.spatial.transform import Rotation

    return np.concatenate([Rotation.random(random_state=rng.integers(1 << 30)).as_matrix(),
                           rng.normal(size=(3, 1))], 1)


def _project(k, rt, x):
    cam = x @ rt[:, :3].T + rt[:, 3]
    uv = cam @ k.T
    return uv[:, :2] / uv[:, 2:]


def test_point_round_trips():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(50, 3))
    align = _rand_rt(rng)
    np.testing.assert_allclose(frames.tu_to_sfm_points(frames.sfm_to_tu_points(v, 0.013, align), 0.013, align), v,
                               atol=1e-9)
    np.testing.assert_allclose(frames.model_to_cap_points(frames.cap_to_model_points(v)), v, atol=1e-12)
    np.testing.assert_allclose(frames.tu_to_model_points(v), 2.5 * v / 1000)  # C2F . F2C = I
    np.testing.assert_allclose(frames.cap_to_model_points(frames.tu_to_cap_points(v)), frames.tu_to_model_points(v))


def test_extrinsics_follow_points_so_pixels_do_not_move():
    """Converting a camera and the points with the same transform leaves every projection unchanged."""
    rng = np.random.default_rng(1)
    k = np.array([[800.0, 0, 150], [0, 800, 200], [0, 0, 1]])
    align = _rand_rt(rng)
    rt = _rand_rt(rng)
    x = rt[:, :3].T @ (rng.normal(size=(30, 3)) * 0.1 + [0, 0, 5]).T - rt[:, :3].T @ rt[:, 3:]
    x = x.T  # points in front of the camera
    for pts, ext in ((frames.sfm_to_tu_points(x, 0.02, align), frames.sfm_to_tu_extrinsics(rt, 0.02, align)),
                     (frames.tu_to_cap_points(x), frames.tu_to_cap_extrinsics(rt)),
                     (frames.cap_to_model_points(x), frames.cap_to_model_extrinsics(rt)),
                     (frames.sfm_to_model_points(x, 0.02, align), frames.sfm_to_model_extrinsics(rt, 0.02, align))):
        np.testing.assert_allclose(_project(k, ext, pts), _project(k, rt, x), atol=1e-6)
    # the released formula for extrinsics: R_model = R_cap F2C, t_model = 2.5 t_cap
    m = frames.cap_to_model_extrinsics(rt)
    np.testing.assert_allclose(m[:, :3], rt[:, :3] @ frames.F2C)
    np.testing.assert_allclose(m[:, 3], 2.5 * rt[:, 3])


@pytest.fixture(scope="module")
def real_trajectory():
    from pipelines.generate import real_cameras

    return real_cameras(TESTDATA / "facescape_test_traj.pkl", 256)  # the released file, via the safe reader


def test_real_facescape_cameras_in_the_model_frame(real_trajectory):
    ks, rts = real_trajectory
    centres = -np.einsum("nji,nj->ni", rts[:, :, :3], rts[:, :, 3])
    dist = np.linalg.norm(centres, axis=1)
    assert dist.min() > 3.7 and dist.max() < 4.4  # spec: 3.78-4.31 units
    # every camera looks at the head: its optical axis passes close to the origin
    axis = rts[:, 2, :3]
    miss = np.linalg.norm(np.cross(axis, -centres), axis=1)
    assert miss.max() < 0.35
    # the origin projects near the image centre of the 256 crops
    for k, rt in zip(ks, rts):
        uv = _project(k, rt, np.zeros((1, 3)))[0]
        assert np.all(np.abs(uv - 128) < 60)
    # round trip through CAPSTUDIO, and azimuths as the release measures them
    np.testing.assert_allclose(frames.cap_to_model_extrinsics(frames.model_to_cap_extrinsics(rts)), rts, atol=1e-12)
    az, _ = frames.camera_angles_model(rts)
    assert az.min() < -80 and az.max() > 65 and np.all(np.abs(az) <= 90)
    # positive azimuth = camera on the subject's left (+x in the model frame, where the face looks +z)
    side = np.abs(az) > 10
    assert np.all(np.sign(az[side]) == np.sign(centres[side, 0]))
    assert np.all(centres[:, 2] > 0)  # all in front of the face


def test_thuman_normalization_makes_a_centred_z_up_body():
    rng = np.random.default_rng(0)
    body_y_up = rng.uniform([-0.25, -0.9, -0.1], [0.25, 0.8, 0.1], size=(500, 3)) * 0.4 + [0.01, 0.15, 0.0]
    for uid in ("0003", "0526"):
        file_v = frames.y_up_to_thuman_file(body_y_up, uid)
        s, centre = frames.thuman_normalization(file_v, uid, 0.4)
        m = frames.thuman_file_to_model_points(file_v, uid, s, centre)
        np.testing.assert_allclose(0.5 * (m.min(0) + m.max(0)), 0, atol=1e-12)
        assert np.argmax(np.ptp(m, axis=0)) == 2  # z up
        assert abs(s - 1.5) < 1e-12
