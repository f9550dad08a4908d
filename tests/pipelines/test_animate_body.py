"""Body animation: SMPL-X pose sequences (files, fits, interpolation), the meshes they give a tracked THuman subject,
and `morphable animate-body` through the orthographic cameras."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from pipelines.body_driving import PoseSequence, interpolate_poses, read_pose_file, write_pose_file
from storage.errors import DataError


def test_a_pose_file_round_trips_a_fit_is_one_pose_and_bad_files_are_refused_by_name(standin_root, tmp_path):
    seq = PoseSequence(np.random.default_rng(0).normal(scale=0.2, size=(4, 63)), np.zeros((4, 3)), 30.0, "test")
    back = read_pose_file(write_pose_file(tmp_path / "poses.npz", seq))
    assert np.array_equal(back.body_pose, seq.body_pose) and back.fps == 30.0 and back.frames == 4
    (tmp_path / "p.json").write_text(json.dumps({"body_pose": np.zeros((2, 21, 3)).tolist()}))
    assert read_pose_file(tmp_path / "p.json").body_pose.shape == (2, 63)
    fit = read_pose_file(standin_root / "thuman" / "smplx" / "0003" / "smplx_param.pkl")
    assert fit.frames == 1 and np.abs(fit.body_pose).max() > 0
    for name, doc in {"nan.json": {"body_pose": [[float("nan")] * 63]}, "short.json": {"body_pose": [[0.0] * 60]},
                      "none.json": {"global_orient": [[0, 0, 0]]}}.items():
        (tmp_path / name).write_text(json.dumps(doc))
        with pytest.raises(DataError, match=name):
            read_pose_file(tmp_path / name)
    np.savez(tmp_path / "objects.npz", body_pose=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataError, match="objects.npz"):  # nothing pickled is loaded from a pose file
        read_pose_file(tmp_path / "objects.npz")
    with pytest.raises(DataError, match="not found"):
        read_pose_file(tmp_path / "missing.npz")


def test_pose_interpolation_is_joint_by_joint_along_the_shortest_arc():
    a = PoseSequence(np.zeros((1, 63)), np.zeros((1, 3)), 25.0, "a")
    end = np.zeros((1, 63))
    end[0, 3 * 4] = 0.8  # one joint about x: the slerp is linear in the angle
    end[0, 3 * 7 + 2] = -0.4
    b = PoseSequence(end, np.array([[0.0, 0.6, 0.0]]), 25.0, "b")
    seq = interpolate_poses(a, b, 5)
    np.testing.assert_allclose(seq.body_pose[:, 12], np.linspace(0, 0.8, 5), atol=1e-12)
    np.testing.assert_allclose(seq.body_pose[:, 23], np.linspace(0, -0.4, 5), atol=1e-12)
    np.testing.assert_allclose(seq.global_orient[:, 1], np.linspace(0, 0.6, 5), atol=1e-12)
    far = PoseSequence(np.zeros((1, 63)), np.array([[0.0, 0.0, 2 * np.pi - 0.2]]), 25.0, "far")
    assert np.abs(interpolate_poses(a, far, 3).global_orient[1]).max() < 0.11  # the short way round (-0.1)


def test_a_subject_in_its_own_pose_is_its_track_and_another_pose_moves_the_limbs(model_data):
    from pipelines import catalog
    from pipelines.body_driving import pose_meshes
    from storage.thuman import read_smplx_fit
    from storage.tracks import read_track

    uid = "0526"  # a z-up scan: the file frame's rotation is applied
    fit = read_smplx_fit(model_data.thuman_smplx_fits / uid / "smplx_param.pkl")
    own = PoseSequence(np.stack([fit.body_pose, np.zeros(63)]), np.stack([fit.global_orient] * 2), 25.0, "own")
    meshes, faces = pose_meshes(model_data, uid, own)
    track = read_track(model_data.storage_root, "thuman", uid, catalog.topology("thuman", "smplx").tracker_version)
    # the same frame and placement, to float32 SMPL-X (batched here, one pose there): 1e-4 units = 0.17 mm
    np.testing.assert_allclose(meshes[0], track.vertices["scan"], atol=1e-4)
    assert faces.shape == track.faces.shape
    moved = np.linalg.norm(meshes[1] - meshes[0], axis=1)
    assert moved.max() > 0.05 and np.median(moved) < moved.max()  # the rest pose moves the limbs, not everything


def test_animate_body_cli_on_a_tracked_subject(model_data, untrained_tiny_body_checkpoint, tmp_path):
    from storage.video import read_animated

    env = {**os.environ, "MORPHABLE_SYNTHETIC_ROOT": str(model_data.synthetic_root),
           "MORPHABLE_DATA_ROOT": str(model_data.data_root)}
    fits = model_data.thuman_smplx_fits
    poses = tmp_path / "poses.npz"
    proc = subprocess.run([sys.executable, "-m", "pipelines.cli", "pose-sequence", "--from",
                           str(fits / "0003" / "smplx_param.pkl"), "--to", str(fits / "1024" / "smplx_param.pkl"),
                           "--frames", "3", "--out", str(poses)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "pipelines.cli", "animate-body", "--checkpoint",
                           str(untrained_tiny_body_checkpoint), "--subject", "2201", "--driving", str(poses), "--out",
                           str(out), "--steps", "2"], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "temporal consistency: warping error" in proc.stdout
    assert sorted(p.name for p in (out / "frames").iterdir()) == ["0000", "0001", "0002"]
    assert len(list((out / "frames" / "0001").glob("*.png"))) == 16
    assert read_animated(out / "grid.webp", fps=25.0).shape[1:] == (256, 256, 3)
    doc = json.loads((out / "animation.json").read_text())
    assert doc["subject"] == "2201" and doc["frames"] == 3 and doc["animation"]["mode"] == "shared_noise"
    assert all(0 <= doc["temporal"][k] < 1 for k in ("warping_error", "flicker")), doc["temporal"]
    assert read_pose_file(out / "poses.npz").frames == 3
    missing = subprocess.run([sys.executable, "-m", "pipelines.cli", "animate-body", "--checkpoint",
                              str(untrained_tiny_body_checkpoint), "--subject", "9999", "--driving", str(poses),
                              "--out", str(tmp_path / "none")], env=env, capture_output=True, text=True, timeout=600)
    assert missing.returncode != 0 and "no view store of THuman subject 9999" in missing.stderr + missing.stdout
    assert not (tmp_path / "none").exists()
