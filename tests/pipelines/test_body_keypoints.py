"""Body PCK from fitted keypoints (model.metrics.body_keypoints), checked against independent references: the subset
skinning against smplx's own forward, the projection against the ray caster's silhouettes, PCK against its closed
form, the fit against the stand-in's own SMPL-X silhouettes (recovered) and another pose's (not), and the evaluate
stage's columns on a real evaluation set."""
import numpy as np
import pytest

from storage.views import ViewStore, store_path


@pytest.fixture(scope="module")
def smplx_model(model_data):
    from model.bodies.smplx_body import load_thuman_smplx

    return load_thuman_smplx(model_data.smplx_model_dir)


def _cameras(root, subject: str, size: int = 64):
    from pipelines.training_data import scale_intrinsics

    st = ViewStore.open(store_path(root, "thuman", "smplx", subject))
    views = st.views_of("scan", role=0)[:16]
    return st, scale_intrinsics(st.K[views], "thuman", size), st.RT[views].astype(np.float64)


def _silhouettes(model, vertices, k, rt, size: int = 64):
    from pipelines.evaluation_sets import mesh_silhouettes

    return mesh_silhouettes(vertices, model.faces.astype(np.int64), k, rt, size, "orthographic")


def test_subset_skinning_equals_the_smplx_forward(smplx_model):
    import torch

    from model.metrics.body_keypoints import SubsetLBS

    rng = np.random.default_rng(3)
    index = np.arange(0, smplx_model.v_template.shape[0], 7)
    betas = torch.tensor(rng.normal(0, 1, (1, smplx_model.num_betas)), dtype=torch.float32)
    pose = torch.tensor(rng.normal(0, 0.4, (1, 63)), dtype=torch.float32)
    full = smplx_model(betas=betas, body_pose=pose).vertices[0].detach().numpy()
    subset = SubsetLBS(smplx_model, index)(betas, pose).detach().numpy()
    assert np.abs(full[index] - subset).max() < 1e-5


def test_the_projection_agrees_with_the_ray_caster(model_data, smplx_model):
    """The point each orthographic ray hits projects back onto the centre of that ray's pixel: the projection and
    the ray caster (whose silhouettes the evaluation scores) share one camera convention."""
    from model.metrics.body_keypoints import project_orthographic
    from model.render.raycast import MeshRaycaster

    st, k, rt = _cameras(model_data.storage_root, "2201")
    caster = MeshRaycaster(st.geometry("scan").vertices, smplx_model.faces.astype(np.int64))
    for view in (0, 3, 9):
        hits = caster.cast_orthographic(rt[view], 64, 2.0 / float(k[view][0, 0]))
        rows, cols = np.nonzero(hits.roi_mask)  # (the whole image: row-major, as the hit values)
        px = project_orthographic(hits.hit_values["points"], k[view:view + 1], rt[view:view + 1], 64)[0]
        assert len(rows) > 300
        np.testing.assert_allclose(px, np.stack([cols + 0.5, rows + 0.5], -1), atol=1e-4)


def test_pck_is_the_fraction_within_a_fifth_of_the_torso():
    from model.metrics.body_keypoints import pck_per_view

    gt = np.zeros((2, 14, 2))
    pred = gt.copy()
    pred[0, :, 0] = 1.9  # every error below 0.2 x 10 px
    pred[1, :7, 1] = 2.1  # half of them above
    np.testing.assert_allclose(pck_per_view(pred, gt, 10.0), [1.0, 0.5])
    assert np.isnan(pck_per_view(pred, gt, 0.0)).all()


@pytest.mark.numerics
def test_the_fit_finds_the_pose_of_the_silhouettes(model_data, smplx_model):
    """From the T-pose, placed on the condition's torso: the body's own SMPL-X silhouettes give its joints back;
    the same person's other pose (2301, placed in 2201's frame) gives joints that miss 2201's."""
    from model.metrics.body_keypoints import body_pck
    from pipelines.evaluation_sets import other_pose_in_frame

    st, k, rt = _cameras(model_data.storage_root, "2201")
    own = st.geometry("scan").vertices
    other = other_pose_in_frame(model_data, "thuman", "smplx", "2301", "2201")
    same = body_pck(smplx_model, _silhouettes(smplx_model, own, k, rt), k, rt, own, own)
    moved = body_pck(smplx_model, _silhouettes(smplx_model, other, k, rt), k, rt, own, own)
    print(f"own silhouettes PCK {same.pck.mean():.3f}, another pose's {moved.pck.mean():.3f}")
    assert same.pck.mean() >= 0.9 and same.target_px.shape == (16, 14, 2)
    assert moved.pck.mean() <= same.pck.mean() - 0.2


@pytest.mark.numerics
def test_evaluate_scores_body_pck_on_every_view(model_data, tmp_path):
    """A THuman evaluation set holds the vertices the fit needs and the evaluate stage scores PCK in every view
    (the per-protocol check requires it); without the SMPL-X model the column is NaN and the reason is named."""
    from dataclasses import replace

    from pipelines.evaluate import MetricModels, evaluate_set
    from pipelines.evaluation_sets import generate_eval_set
    from pipelines.scoring import applicable_metrics

    res = generate_eval_set(model_data, "thuman_novel_view", method="copy_input", log=lambda *a, **k: None)
    own_tables = replace(model_data, storage_root=tmp_path / "store")  # (the session's metric history untouched)
    ev = evaluate_set(own_tables, res.path, MetricModels(), log=lambda *a, **k: None)
    per_view, per_protocol = ev.tables["per_view"], ev.tables["per_protocol"]
    assert per_view["pck"].notna().all() and len(per_view) == 16
    assert per_view["pck"].between(0.0, 1.0).all() and int(per_protocol["pck_views"].iloc[0]) == 16
    assert "pck" not in ev.missing and "pck" in applicable_metrics("thuman_novel_view", "")[1]
    blind = replace(own_tables, smplx_model_dir=tmp_path / "nowhere")
    ev = evaluate_set(blind, res.path, MetricModels(), log=lambda *a, **k: None)
    assert ev.tables["per_view"]["pck"].isna().all()
    assert "SMPL-X" in ev.missing["pck"] and "nowhere" in ev.missing["pck"]
