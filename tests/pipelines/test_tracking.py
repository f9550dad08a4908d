"""Tracking on the synthetic stand-in, checked against its ground-truth sidecar."""
import numpy as np
import pytest

from model import frames
from pipelines.track import track
from storage.tracks import read_track


@pytest.fixture(scope="module")
def track_settings(standin_root, tmp_path_factory):
    from tests.conftest import settings_for

    return settings_for(standin_root, tmp_path_factory.mktemp("tracks"))


@pytest.fixture(scope="module")
def flame_track(track_settings):
    return track(track_settings, "facescape", "2", "flame")


@pytest.mark.numerics
def test_facescape_flame_fit_recovers_the_ground_truth(flame_track, track_settings):
    rec = flame_track.record
    for expr, verts_model in rec.vertices.items():
        gt = np.load(track_settings.synthetic_root / "ground_truth" / "facescape" / "2" / f"{expr}.npz")
        gt_model = frames.flame_to_model_points(gt["flame_vertices"] * gt["tu_scale"])
        diag = np.linalg.norm(np.ptp(gt_model, axis=0))
        err = np.linalg.norm(verts_model - gt_model, axis=1).mean()
        assert err < 0.01 * diag, (expr, err / diag)
        assert rec.metrics[expr]["p95_mm"] < 3.0 and rec.metrics[expr]["mean_mm"] < 1.0
    jaw = np.asarray(rec.params["6_jaw_right"]["jaw_pose"])
    assert jaw[0] > 0.05 and jaw[1] < -0.05  # opened and turned to the subject's right, like the truth


@pytest.mark.numerics
def test_retracking_gives_the_same_data_version(flame_track, track_settings):
    again = track(track_settings, "facescape", "2", "flame")
    assert again.record.data_version == flame_track.record.data_version
    stored = read_track(track_settings.storage_root, "facescape", "2", flame_track.record.tracker_version)
    assert stored.data_version == flame_track.record.data_version and set(stored.items) == set(
        flame_track.record.items)


@pytest.mark.numerics
def test_bilinear_meshes_line_up_with_the_cameras(track_settings):
    """TU vertices in the model frame, projected with model-frame cameras, land on the same pixels as in TU."""
    import cv2

    from storage.facescape import FaceScapeDataset

    rec = track(track_settings, "facescape", "1", "bilinear").record
    ds = FaceScapeDataset(track_settings.facescape_root, track_settings.facescape_rt_scale_dict)
    tup = ds.tuple("1", "2_smile")
    scale, align = ds.alignment("1", tup.expression_index)
    tu = ds.read_registered_mesh(tup).vertices
    np.testing.assert_allclose(rec.vertices["2_smile"], frames.tu_to_model_points(tu), atol=1e-6)
    for view in tup.valid_views[:6]:
        cam = tup.cameras[view]
        a = cv2.projectPoints(tu, cv2.Rodrigues(frames.sfm_to_tu_extrinsics(cam.Rt, scale, align)[:, :3])[0],
                              frames.sfm_to_tu_extrinsics(cam.Rt, scale, align)[:, 3], cam.K, None)[0]
        m = frames.sfm_to_model_extrinsics(cam.Rt, scale, align)
        b = cv2.projectPoints(rec.vertices["2_smile"], cv2.Rodrigues(m[:, :3])[0], m[:, 3], cam.K, None)[0]
        np.testing.assert_allclose(a, b, atol=1e-3)


@pytest.mark.numerics
def test_thuman_smplx_track(track_settings):
    for uid in ("0003", "0526"):
        rec = track(track_settings, "thuman", uid).record
        v = rec.vertices["scan"]
        np.testing.assert_allclose(0.5 * (v.min(0) + v.max(0)), 0, atol=1e-6)  # centred on the SMPL-X box
        assert np.argmax(np.ptp(v, axis=0)) == 2  # z up for both axis conventions
        assert rec.metrics["scan"]["scan_to_mesh_mean_mm"] < 15  # clothing offset 1-12 mm + noise
        gt = np.load(track_settings.synthetic_root / "ground_truth" / "thuman" / f"{uid}.npz")
        assert abs(rec.params["scan"]["fit_scale"] - float(gt["scale"])) < 1e-6


def test_track_store_rounding_and_atomicity(tmp_path):
    from storage.errors import InvalidContentError
    from storage.tracks import TrackRecord, write_track

    faces = np.array([[0, 1, 2]])
    base = TrackRecord("facescape", "7", "t-1", {"e": {"a": np.array([0.1, 0.2])}}, {"e": np.eye(3)}, faces)
    v1 = write_track(tmp_path, base).data_version
    nudged = TrackRecord("facescape", "7", "t-1", {"e": {"a": np.array([0.1 + 1e-9, 0.2])}}, {"e": np.eye(3)}, faces)
    assert write_track(tmp_path, nudged).data_version == v1
    moved = TrackRecord("facescape", "7", "t-1", {"e": {"a": np.array([0.11, 0.2])}}, {"e": np.eye(3)}, faces)
    assert write_track(tmp_path, moved).data_version != v1
    bad = TrackRecord("facescape", "7", "t-1", {"e": {}}, {"e": np.full((3, 3), np.nan)}, faces)
    with pytest.raises(InvalidContentError, match="non-finite"):
        write_track(tmp_path, bad)
    assert read_track(tmp_path, "facescape", "7", "t-1").params["e"]["a"] == [0.11, 0.2]  # old track intact


@pytest.mark.numerics
def test_thuman_rigid_refinement_recovers_a_misaligned_fit(track_settings, monkeypatch):
    """Shift the released translation by 2 cm: the refined track moves back onto the scan."""
    import storage.thuman as thuman

    original = thuman.read_smplx_fit

    def shifted(path):
        fit = original(path)
        return thuman.SmplxFit(**{**fit.__dict__, "translation": fit.translation + [0.02 * fit.scale, 0, 0]})

    monkeypatch.setattr(thuman, "read_smplx_fit", shifted)
    plain = track(track_settings, "thuman", "1024", "smplx").record.metrics["scan"]
    refined = track(track_settings, "thuman", "1024", "smplx_refined").record.metrics["scan"]
    assert refined["before_refinement_mean_mm"] == pytest.approx(plain["scan_to_mesh_mean_mm"])
    assert refined["scan_to_mesh_mean_mm"] < plain["scan_to_mesh_mean_mm"] - 3
