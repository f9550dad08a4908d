"""The animation ground truth: the stand-in's identities replayed and rendered through an expression sweep."""
import numpy as np
import pytest

from storage.errors import DataError


def test_the_replayed_identity_renders_the_stand_ins_own_calibrated_views(model_data):
    """Given the capture's head pose, the sweep renderer reproduces the view store's images of that expression
    (same person, framing and shading; the store's views went through the camera's distortion, colour cast and
    noise, the JPEG and the colour calibration), so its canonical-pose frames are that person's true images."""
    from model.metrics.image import psnr
    from pipelines.animations import animation_inputs, get_animation
    from pipelines.standin_sweep import SweepRenderer, expression_parameters
    from storage.views import ViewStore, store_path

    spec = get_animation("heldout_jaw_sweep")
    inputs = animation_inputs(model_data, spec)
    assert len(inputs.views) == 16 and inputs.input_view not in inputs.views
    renderer = SweepRenderer(model_data.synthetic_root, spec.subject)
    truth = np.load(model_data.synthetic_root / "ground_truth" / "facescape" / spec.subject / f"{spec.start}.npz")
    pose = {k: truth[k] for k in ("global_orient", "neck_pose", "eye_pose", "transl")}
    images, masks = renderer.render(renderer.vertices(truth["expression"], truth["jaw_pose"], **pose), inputs.ks,
                                    inputs.rts)
    st = ViewStore.open(store_path(model_data.storage_root, "facescape", "flame", spec.subject))
    store_masks, store_rgb = st.mask_many(np.array(inputs.views)) > 0, st.rgb_many(np.array(inputs.views))
    iou = [(a & b).sum() / (a | b).sum() for a, b in zip(masks, store_masks)]
    both = masks & store_masks
    assert min(iou) > 0.97, iou
    assert np.mean([psnr(a, b, m) for a, b, m in zip(store_rgb, images, both)]) > 30.0
    # the canonical pose (what animations condition on) is a few degrees away from the capture's
    e, j = expression_parameters(spec.start)
    _, canonical = renderer.render(renderer.vertices(e, j), inputs.ks, inputs.rts)
    assert 0.75 < np.mean([(a & b).sum() / (a | b).sum() for a, b in zip(canonical, store_masks)]) < 0.97


def test_a_sweep_runs_between_its_expressions_and_moves_the_jaw(standin_root):
    from pipelines.generate import virtual_cameras
    from pipelines.standin_sweep import SweepRenderer, expression_parameters, sweep_sequence

    seq = sweep_sequence("1_neutral", "6_jaw_right", 5)
    for t, name in ((0, "1_neutral"), (4, "6_jaw_right")):
        e, j = expression_parameters(name)
        np.testing.assert_allclose(seq.expression[t], e, atol=1e-12)
        np.testing.assert_allclose(seq.jaw_pose[t], j, atol=1e-12)
    ks, rts = virtual_cameras(128, 4)
    truth = SweepRenderer(standin_root, "122").sweep(seq, ks, rts, size=128)
    assert truth.views.shape == (5, 4, 128, 128, 3) and truth.masks.shape == (5, 4, 128, 128)
    assert (truth.views[~truth.masks] == 255).all()  # white outside the head
    change = [np.abs(truth.views[t].astype(int) - truth.views[t - 1]).mean() for t in range(1, 5)]
    assert all(c > 0 for c in change) and max(change) < 3 * min(change)  # an even motion, frame to frame


def test_an_unknown_subject_or_missing_stand_in_is_named(standin_root, tmp_path):
    from pipelines.demo_data import facescape_identity

    with pytest.raises(DataError, match="'999' is not in this stand-in"):
        facescape_identity(standin_root, "999")
    with pytest.raises(DataError, match="demo-data"):
        facescape_identity(tmp_path, "122")
    with pytest.raises(ValueError, match="unknown FaceScape expression"):
        from pipelines.standin_sweep import sweep_sequence

        sweep_sequence("1_neutral", "99_nothing", 4)


def test_frame_scores_of_the_truth_against_itself_are_perfect_and_the_summary_counts_matches(standin_root):
    from model import frames
    from model.bodies.flame import load_flame_landmarks, load_flame_model
    from model.metrics.face import REID_THRESHOLD
    from pipelines.animation_scores import frame_scores, summary
    from pipelines.driving import sequence_meshes
    from pipelines.generate import virtual_cameras
    from pipelines.standin_sweep import SweepRenderer, sweep_sequence

    seq = sweep_sequence("1_neutral", "6_jaw_right", 3)
    ks, rts = virtual_cameras(128, 16)
    renderer = SweepRenderer(standin_root, "122")
    truth = renderer.sweep(seq, ks, rts, size=128)
    flame_dir = standin_root / "body_models" / "flame"
    _, lmk = sequence_meshes(load_flame_model(flame_dir), renderer.identity.shape, seq, load_flame_landmarks(flame_dir))
    landmarks = frames.flame_to_model_points(renderer.identity.tu_scale * lmk)
    front = truth.views[0, 7]
    table = frame_scores(truth.views, landmarks, ks, rts, front, truth.views, truth.masks)
    assert list(table["frame"]) == [0, 1, 2]
    assert (table["masked_psnr"] > 150).all() and (table["ssim"] == 1.0).all()  # the truth is its own ground truth
    assert (table["silhouette_iou"] > 0.99).all()
    assert table["expression_nme"].between(0, 0.5).all()  # the true face, the driving FLAME's landmarks
    shifted = np.roll(truth.views, 4, axis=3)  # the same faces 4 px to the right: the landmarks follow the image
    moved = frame_scores(shifted, landmarks, ks, rts, front)
    assert (moved["expression_nme"] > table["expression_nme"] + 0.03).all(), (moved, table)
    assert (table["identity_distance"] < REID_THRESHOLD).all()  # the same person in every frame
    row = summary(table, {"warping_error": 0.0, "flicker": 0.0})
    assert row["identity_match"] == 1.0 and row["warping_error"] == 0.0
    assert row["masked_psnr"] == pytest.approx(table["masked_psnr"].mean())
