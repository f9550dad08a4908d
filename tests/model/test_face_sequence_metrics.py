"""The per-frame face scores of an animation against closed forms: the landmark NME's normalisation, the pixel
mapping of landmarks detected on an upscaled small image, the box fallback, and the identity distance."""
import numpy as np
import pytest
from PIL import Image

from tests.conftest import TESTDATA


def _face(size: int) -> np.ndarray:
    with Image.open(TESTDATA / "stylegan1_256.png") as im:
        return np.asarray(im.convert("RGB").resize((size, size), Image.BICUBIC if size > 256 else Image.BOX))


def test_landmark_error_is_the_mean_distance_over_the_outer_eye_corners():
    from model.metrics.face import landmark_error

    gt = np.random.default_rng(0).uniform(0, 100, (68, 2))
    gt[36], gt[45] = (20.0, 50.0), (60.0, 50.0)  # inter-ocular distance 40
    assert landmark_error(gt + (3.0, 4.0), gt) == pytest.approx(5.0 / 40.0)
    shifted = gt.copy()
    shifted[:34] += (0.0, 8.0)  # half the points 8 px off: mean 4 px
    assert landmark_error(shifted, gt) == pytest.approx(4.0 / 40.0)
    assert np.isnan(landmark_error(None, gt))
    degenerate = gt.copy()
    degenerate[45] = degenerate[36]
    assert np.isnan(landmark_error(gt, degenerate))


def test_landmarks_of_a_small_image_are_reported_in_its_own_pixels():
    from model.metrics.face import landmark_error, landmarks68, landmarks68_px

    big, small = _face(256), _face(64)
    reference = (landmarks68(big) + 0.5) / 4 - 0.5  # the 256 px detection, in 64 px pixel coordinates
    points, found = landmarks68_px(small)
    assert found and points.shape == (68, 2)
    assert landmark_error(points, reference) < 0.08  # the same face, found at the same place
    assert landmark_error(points * 4, reference) > 1.0  # (the upscaled detector's own coordinates would be far off)


def test_a_face_the_detector_misses_is_predicted_in_the_fallback_box():
    from model.metrics.face import face_descriptor, landmarks68_px

    reference, _ = landmarks68_px(_face(64))
    blank = np.full((64, 64, 3), 255, np.uint8)
    assert landmarks68_px(blank) == (None, False)
    points, found = landmarks68_px(blank, fallback=reference)
    assert not found and points.shape == (68, 2)
    lo, hi = reference.min(0) - 2, reference.max(0) + 2
    assert ((points >= lo) & (points <= hi)).mean() > 0.9  # inside the box it was given
    assert face_descriptor(blank) is None and face_descriptor(blank, reference).shape == (128,)


def test_identity_distance_is_zero_for_the_same_face_and_nan_without_one():
    from model.metrics.face import REID_THRESHOLD, face_descriptor, identity_distance

    face = _face(256)
    ref = face_descriptor(face)
    assert identity_distance(ref, face) == pytest.approx(0.0, abs=1e-9)
    assert identity_distance(ref, _face(64)) < REID_THRESHOLD  # the same person, smaller
    assert np.isnan(identity_distance(ref, np.full((64, 64, 3), 255, np.uint8)))
    assert np.isnan(identity_distance(None, face))
