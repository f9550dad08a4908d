"""The novel-pose ground truth and protocol: the stand-in draws a held-out person in other poses, the view stores
record who is whom, the protocol pairs one pose's input with another pose's SMPL-X and views, and the input pose's
SMPL-X is placed in the target's frame for the "which pose do the views follow" score."""
import json

import numpy as np
import pytest

from pipelines.protocols import get_protocol, resolve
from storage.views import ViewStore, store_path


def test_a_pose_variant_is_the_same_person_in_another_pose(standin_root):
    table = json.loads((standin_root / "thuman" / "model" / "same_person.json").read_text())
    assert table == {"2301": "2201", "2401": "2201"}
    gt = {u: np.load(standin_root / "ground_truth" / "thuman" / f"{u}.npz") for u in ("2201", "2301", "2401")}
    for uid in ("2301", "2401"):
        for key in ("betas", "global_orient", "scale", "translation", "expression", "left_hand_pose"):
            np.testing.assert_array_equal(gt[uid][key], gt["2201"][key], err_msg=key)
        assert str(gt[uid]["person"]) == "2201"
        # another pose: the arms and legs move by tenths of a radian, not by noise
        assert np.abs(gt[uid]["body_pose"] - gt["2201"]["body_pose"]).max() > 0.3
        texture = standin_root / "thuman" / "model" / uid / "material0.jpeg"  # the same clothes
        assert texture.read_bytes() == (standin_root / "thuman" / "model" / "2201" / "material0.jpeg").read_bytes()
    assert np.abs(gt["2301"]["body_pose"] - gt["2401"]["body_pose"]).max() > 0.3


def test_the_standing_scans_are_unchanged_by_the_variants(standin_root):
    """The demo's other scans keep their near-A-pose draws (the shoulders lowered by 0.9-1.3 rad)."""
    pose = np.load(standin_root / "ground_truth" / "thuman" / "2201.npz")["body_pose"]
    assert -1.3 <= pose[15 * 3 + 2] <= -0.9 and 0.9 <= pose[16 * 3 + 2] <= 1.3


def test_the_protocols_split_persons_and_poses(model_data):
    novel_view = resolve(get_protocol("thuman_novel_view"), model_data.storage_root)
    assert [p.subject for p in novel_view] == ["2201"]  # each person once
    pairs = resolve(get_protocol("thuman_novel_pose"), model_data.storage_root)
    assert [(p.subject, p.input_subject) for p in pairs] == [("2301", "2201"), ("2401", "2201")]
    source = ViewStore.open(store_path(model_data.storage_root, "thuman", "smplx", "2201"))
    assert pairs[0].input_view == novel_view[0].input_view and pairs[0].input_view in source.views_of("scan", role=1)
    assert len(pairs[0].target_views) == 16
    # the digests of the other protocols do not see the new field
    assert "input_subject" not in novel_view[0].as_doc() and pairs[0].as_doc()["input_subject"] == "2201"


def test_the_input_pose_is_placed_in_the_target_frame(model_data, standin_root):
    """Independent path: the person's SMPL-X as the stand-in wrote it (raw scan frame), through the target scan's
    own normalisation, equals what the evaluation places in the target frame."""
    from model import frames
    from pipelines.evaluation_sets import other_pose_in_frame
    from storage.tracks import read_track
    from pipelines import catalog

    placed = other_pose_in_frame(model_data, "thuman", "smplx", "2201", "2301")
    raw = np.load(standin_root / "ground_truth" / "thuman" / "2201.npz")["smplx_vertices_scan_frame"]
    norm = read_track(model_data.storage_root, "thuman", "2301",
                      catalog.topology("thuman", "smplx").tracker_version).params["scan"]["normalization"]
    expected = frames.thuman_file_to_model_points(frames.y_up_to_thuman_file(raw, "2201"), "2301", norm[0],
                                                  -np.asarray(norm[1:]))
    assert np.abs(placed - expected).max() < 2e-3  # model units (the fit is the tracked one, not the drawn one)
    own = ViewStore.open(store_path(model_data.storage_root, "thuman", "smplx", "2301")).geometry("scan").vertices
    assert np.abs(placed - own).max() > 0.05  # another pose indeed


def test_thuman_mesh_silhouettes_match_the_rendered_masks(model_data):
    """The orthographic SMPL-X silhouette at a view's camera covers the clothed scan's mask (clothes are mm thick)."""
    from pipelines.evaluation_sets import mesh_silhouettes
    from pipelines.training_data import scale_intrinsics
    from storage.tracks import read_track
    from pipelines import catalog
    import cv2

    st = ViewStore.open(store_path(model_data.storage_root, "thuman", "smplx", "2201"))
    views = st.views_of("scan", role=0)[:4]
    faces = read_track(model_data.storage_root, "thuman", "2201",
                       catalog.topology("thuman", "smplx").tracker_version).faces
    k = scale_intrinsics(st.K[views], "thuman", 64)
    masks = mesh_silhouettes(st.geometry("scan").vertices, faces, k, st.RT[views].astype(np.float64), 64,
                             "orthographic")
    truth = [cv2.resize(m, (64, 64), interpolation=cv2.INTER_NEAREST) > 127 for m in st.mask_many(views)]
    ious = [float((t & (m > 127)).sum() / (t | (m > 127)).sum()) for t, m in zip(truth, masks)]
    assert min(ious) > 0.75, ious


def test_wrong_mesh_never_takes_the_same_persons_other_pose(model_data):
    from pipelines.evaluation_sets import _dataset_subjects, wrong_mesh

    subjects = _dataset_subjects(model_data, "thuman", "smplx")
    assert subjects[-3:] == ["2201", "2301", "2401"]
    got = wrong_mesh(model_data, "thuman", "smplx", "2201", "scan", subjects)
    first = ViewStore.open(store_path(model_data.storage_root, "thuman", "smplx", "0003")).geometry("scan").vertices
    np.testing.assert_array_equal(got, first)  # past 2301 and 2401, cyclically to the first other body
    got = wrong_mesh(model_data, "thuman", "smplx", "2301", "scan", subjects)
    np.testing.assert_array_equal(got, first)


def test_a_malformed_same_person_table_is_an_error_naming_it(tmp_path):
    from storage.errors import DataError
    from storage.thuman import THumanDataset

    (tmp_path / "0001").mkdir()
    (tmp_path / "same_person.json").write_text('{"0001": "0001"}')
    with pytest.raises(DataError, match="same_person.json"):
        THumanDataset(tmp_path).same_person()
