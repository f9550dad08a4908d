"""Animation: driving sequences (files, interpolation, smoothing), videos that read back, the samplers' modes and
`morphable animate` on a folder of real face images."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from model.diffusion.ddim import DDIMConfig
from pipelines.driving import DrivingSequence, interpolate, read_driving_file, smooth, write_driving_file
from storage.errors import DataError
from tests.conftest import TESTDATA


def test_a_driving_file_round_trips_and_bad_ones_are_refused_by_name(tmp_path):
    seq = DrivingSequence(np.random.default_rng(0).normal(size=(5, 50)), np.zeros((5, 3)), 30.0, "test")
    back = read_driving_file(write_driving_file(tmp_path / "seq.npz", seq))
    assert np.array_equal(back.expression, seq.expression) and back.fps == 30.0 and back.frames == 5
    (tmp_path / "seq.json").write_text(json.dumps({"expression": [[0.1] * 10, [0.2] * 10]}))
    js = read_driving_file(tmp_path / "seq.json")
    assert js.frames == 2 and np.array_equal(js.jaw_pose, np.zeros((2, 3))) and js.fps == 25.0
    bad = {"nan.json": {"expression": [[float("nan")]]}, "shape.json": {"expression": [[0.0]], "jaw_pose": [1, 2]},
           "none.json": {"jaw_pose": [[0, 0, 0]]}}
    for name, doc in bad.items():
        (tmp_path / name).write_text(json.dumps(doc))
        with pytest.raises(DataError, match=name):
            read_driving_file(tmp_path / name)
    np.savez(tmp_path / "objects.npz", expression=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataError, match="objects.npz"):  # no pickled object is loaded from a driving file
        read_driving_file(tmp_path / "objects.npz")
    with pytest.raises(DataError, match="unknown driving file type"):
        read_driving_file(tmp_path / "seq.txt")


def test_interpolation_and_smoothing_closed_forms():
    seq = interpolate(np.zeros(4), np.array([1.0, 2.0, 3.0, 4.0]), 5, jaw_end=np.array([0.4, 0.0, 0.0]))
    np.testing.assert_allclose(seq.expression[2], [0.5, 1.0, 1.5, 2.0])
    np.testing.assert_allclose(seq.jaw_pose[:, 0], np.linspace(0, 0.4, 5), atol=1e-12)  # one axis: slerp is linear
    ramp = DrivingSequence(np.arange(40.0)[:, None] * [1.0, -2.0], np.zeros((40, 3)), 25.0, "ramp")
    smoothed = smooth(ramp, 2.0)
    np.testing.assert_allclose(smoothed.expression[10:30], ramp.expression[10:30], atol=1e-9)  # a line stays put
    jitter = DrivingSequence(np.where(np.arange(40) % 2, 1.0, -1.0)[:, None], np.zeros((40, 3)), 25.0, "jitter")
    assert np.abs(smooth(jitter, 2.0).expression[10:30]).max() < 1e-4  # alternating fit noise is removed


def test_videos_read_back(tmp_path):
    from storage.video import grid, mp4_available, read_animated, write_animated, write_mp4

    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (4, 16, 24, 3), dtype=np.uint8)
    assert np.array_equal(read_animated(write_animated(tmp_path / "a.webp", frames, 8.0)), frames)  # lossless
    assert read_animated(write_animated(tmp_path / "a.gif", frames, 8.0)).shape == frames.shape
    still = np.concatenate([frames[:1]] * 3 + [frames[1:2]])  # encoders fold repeated frames into a longer one
    for suffix in (".webp", ".gif"):
        back = read_animated(write_animated(tmp_path / f"still{suffix}", still, 8.0), fps=8.0)
        assert back.shape == still.shape
    assert np.array_equal(back[:3], np.repeat(back[:1], 3, 0))
    sheet = grid(np.stack([frames] * 5, 1), columns=4)
    assert sheet.shape == (4, 32, 96, 3) and np.array_equal(sheet[:, 16:, 24:48], np.full((4, 16, 24, 3), 255))
    if mp4_available():
        assert write_mp4(tmp_path / "a.mp4", frames[:, :15], 8.0).stat().st_size > 0  # odd sizes padded
    with pytest.raises(ValueError, match="uint8"):
        write_animated(tmp_path / "b.webp", frames.astype(np.float32), 8.0)


@pytest.fixture(scope="module")
def tiny_checkpoint(untrained_tiny_checkpoint):
    return untrained_tiny_checkpoint


@pytest.mark.numerics
def test_shared_noise_repeats_a_frame_whose_mesh_did_not_move_and_independent_sampling_does_not(
        standin_settings, tiny_checkpoint):
    from model import frames
    from model.bodies.flame import load_flame_model
    from pipelines.animate import AnimationConfig, animate_views, temporal_scores
    from pipelines.generate import _input_image, virtual_cameras
    from pipelines.model_loading import load_model

    model = load_model(tiny_checkpoint, projection="perspective").model
    flame = load_flame_model(standin_settings.flame_model_dir)
    still = np.repeat(frames.flame_to_model_points(flame.v_template)[None], 3, 0)
    ks, rts = virtual_cameras(model.cfg.image_size, model.cfg.view_num)
    image = _input_image(standin_settings.facescape_root / "1" / "1_neutral" / "7.jpg", model.cfg.image_size)
    ddim = DDIMConfig(steps=3, seed=4)
    shared = animate_views(model, image, ks, rts, still, ddim, AnimationConfig(mode="shared_noise"))
    independent = animate_views(model, image, ks, rts, still, ddim, AnimationConfig(mode="independent"))
    warm = animate_views(model, image, ks, rts, still, ddim, AnimationConfig(mode="warm_start", strength=0.5))
    assert shared.shape == (3, 16, 64, 64, 3)
    assert np.array_equal(shared[0], shared[1]) and np.array_equal(shared[1], shared[2])
    assert np.array_equal(independent[0], shared[0]) and not np.array_equal(independent[1], independent[0])
    assert np.array_equal(warm[0], shared[0])  # the first frame is a fresh sample in every mode
    change = lambda v: float(np.abs(np.diff(v.astype(float), axis=0)).mean())  # noqa: E731
    assert change(warm) < change(independent)
    # repeated frames of a still mesh are perfectly consistent; independent draws are not
    still_scores = temporal_scores(shared, still, flame.faces, ks, rts)  # (the warp reads at the pixel, to rounding)
    assert still_scores["warping_error"] < 1e-20 and still_scores["flicker"] == 0.0
    scores = temporal_scores(independent, still, flame.faces, ks, rts)
    assert scores["warping_error"] > 0 and scores["flicker"] > 0


def test_animate_cli_on_a_folder_of_real_face_images(standin_root, tiny_checkpoint, tmp_path):
    from PIL import Image

    from storage.video import read_animated

    driving = tmp_path / "frames"
    driving.mkdir()
    faces = [np.asarray(Image.open(TESTDATA / f"stylegan{i}_256.png").convert("RGB")) for i in (1, 2)]
    for i, face in enumerate([faces[0], faces[1], faces[0][:, ::-1]]):
        Image.fromarray(np.ascontiguousarray(face)).save(driving / f"{i + 1:04d}.png")
    env = {**os.environ, "MORPHABLE_SYNTHETIC_ROOT": str(standin_root), "MORPHABLE_DATA_ROOT": str(tmp_path)}
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "pipelines.cli", "animate", "--checkpoint", str(tiny_checkpoint),
                           "--image", str(TESTDATA / "stylegan1_256.png"), "--driving", str(driving), "--out",
                           str(out), "--steps", "2"], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "fitted FLAME to frame 3/3 (0003.png)" in proc.stdout
    # progress over every frame's steps x view batches (2 DDIM steps x 2 batches of 8 views)
    assert "animating 3 frames x 16 views (shared_noise): 12/12" in proc.stdout, proc.stdout
    assert sorted(p.name for p in (out / "frames").iterdir()) == ["0000", "0001", "0002"]
    assert len(list((out / "frames" / "0002").glob("*.png"))) == 16
    pngs = np.stack([np.asarray(Image.open(out / "frames" / f"{t:04d}" / "05.png"))[..., :3] for t in range(3)])
    video = read_animated(out / "views" / "05.webp", fps=25.0)
    # the video's frames are the frames (an encoder folds identical neighbours, and writes a sequence of one
    # repeated image as a still: the untrained network's views may not change with these expressions)
    distinct = 1 + int(sum(not np.array_equal(pngs[t], pngs[t - 1]) for t in (1, 2)))
    assert video.shape == ((3,) if distinct > 1 else (1,)) + (64, 64, 3)
    assert all(any(np.array_equal(v, p) for p in pngs) for v in video)
    assert read_animated(out / "grid.webp", fps=25.0).shape[1:] == (256, 256, 3)
    doc = json.loads((out / "animation.json").read_text())
    assert doc["frames"] == 3 and doc["animation"]["mode"] == "shared_noise" and "smoothed" in doc["driving"]
    assert all(0 <= doc["temporal"][k] < 1 for k in ("warping_error", "flicker")), doc["temporal"]
    assert "temporal consistency: warping error" in proc.stdout
    seq = read_driving_file(out / "sequence.npz")
    assert seq.frames == 3 and np.isfinite(seq.expression).all()
    bad = subprocess.run([sys.executable, "-m", "pipelines.cli", "animate", "--checkpoint", str(tiny_checkpoint),
                          "--image", str(TESTDATA / "stylegan1_256.png"), "--driving", str(tmp_path / "nothing"),
                          "--out", str(tmp_path / "out2")], env=env, capture_output=True, text=True, timeout=600)
    assert bad.returncode != 0 and "nothing" in bad.stderr and "driving input not found" in bad.stderr
    assert not (tmp_path / "out2").exists()


def test_animate_sequence_cli_scores_a_declared_sequence_against_its_ground_truth(model_data, tiny_checkpoint,
                                                                                  tmp_path):
    """`morphable animate-sequence`: the stand-in's ground truth, the sampler and the independent baseline of one
    declared sequence, scored per frame; a folder holding other files is refused, not overwritten."""
    import pandas as pd

    env = {**os.environ, "MORPHABLE_SYNTHETIC_ROOT": str(model_data.synthetic_root),
           "MORPHABLE_DATA_ROOT": str(model_data.data_root)}
    out = tmp_path / "anim"
    cmd = [sys.executable, "-m", "pipelines.cli", "animate-sequence", "--checkpoint", str(tiny_checkpoint),
           "--sequence", "heldout_smile", "--frames", "3", "--out", str(out), "--steps", "1"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| shared_noise |" in proc.stdout and "| independent |" in proc.stdout and "| ground_truth |" in proc.stdout
    frames = pd.read_parquet(out / "frames.parquet")
    assert sorted(frames["sampler"].unique()) == ["ground_truth", "independent", "shared_noise"]
    assert len(frames) == 3 * 3 and frames["expression_nme"].notna().all()
    doc = json.loads((out / "summary.json").read_text())
    assert doc["sequence"]["name"] == "heldout_smile" and doc["sequence"]["frames"] == 3
    assert doc["scores"]["ground_truth"]["identity_match"] == 1.0
    assert doc["scores"]["independent"]["warping_error"] > doc["scores"]["shared_noise"]["warping_error"]
    assert (out / "strip.png").is_file() and (out / "truth" / "grid.webp").is_file()
    assert len(list((out / "shared_noise" / "views").glob("*.webp"))) == 16
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    refused = subprocess.run(cmd[:-4] + ["--out", str(other), "--steps", "1"], env=env, capture_output=True,
                             text=True, timeout=600)
    assert refused.returncode != 0 and "holds files this command did not write" in refused.stderr + refused.stdout
    assert (other / "keep.txt").read_text() == "mine"
