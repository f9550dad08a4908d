"""Every asset check can fail: each is driven with inputs that must pass and inputs that must fail."""
import json

import numpy as np
import pandas as pd
import pytest

from assets_defs.tracking import FitQualityConfig, fit_quality
from assets_defs.training import inputs_current, inputs_current_per_experiment
from pipelines import catalog
from pipelines.first_stage import judge_heldout_psnr, psnr_bars_db
from pipelines.records import CheckpointRecord
from pipelines.scoring import applicable_metrics, judge_tables
from storage.tracks import TrackRecord


def _record(dataset, metrics, vertices=None):
    vertices = vertices if vertices is not None else {k: np.zeros((4, 3)) for k in metrics}
    return TrackRecord(dataset, "1", "t", {}, vertices, np.array([[0, 1, 2]]), metrics)


@pytest.mark.parametrize("dataset,key", [("facescape", "p95_mm"), ("thuman", "scan_to_mesh_p95_mm")])
def test_fit_quality_fails_on_error_missing_error_and_non_finite_vertices(dataset, key):
    cfg, topology = FitQualityConfig(), catalog.topology(dataset)
    assert topology.quality_metric == key
    limit = topology.quality_bar_mm
    assert fit_quality(topology, _record(dataset, {"a": {key: limit * 0.5}}), cfg)[0]
    passed, info = fit_quality(topology, _record(dataset, {"a": {key: limit * 0.5}, "b": {key: limit * 2}}), cfg)
    assert not passed and info["worst_p95_mm"] == limit * 2
    assert not fit_quality(topology, _record(dataset, {"a": {key: limit * 0.5}}), FitQualityConfig(
        max_p95_mm=limit * 0.25))[0]  # the run config's threshold overrides the catalog's
    passed, info = fit_quality(topology, _record(dataset, {"a": {"vertices": 5122}}), cfg)  # nothing measured
    assert not passed and info["items_without_error"] == "a"
    bad = {"a": np.array([[0.0, np.nan, 0.0]] * 4)}
    passed, info = fit_quality(topology, _record(dataset, {"a": {key: 0.1}}, bad), cfg)
    assert not passed and info["items_with_non_finite_vertices"] == "a"


def test_bilinear_tracks_are_judged_by_their_registration_error(model_data):
    """The bilinear track measures its registered meshes against the raw scans; a tight threshold fails it."""
    from pipelines.track import track

    rec = track(model_data, "facescape", "1", "bilinear").record
    assert all(0 <= m["p95_mm"] < 2.0 for m in rec.metrics.values())
    bilinear = catalog.topology("facescape", "bilinear")
    assert fit_quality(bilinear, rec, FitQualityConfig())[0]
    assert not fit_quality(bilinear, rec, FitQualityConfig(max_p95_mm=0.01))[0]


def test_heldout_psnr_judges_every_dataset_against_its_own_bar():
    bars = psnr_bars_db()
    ok = {d: bar + 1 for d, bar in bars.items()}
    assert judge_heldout_psnr(ok)[0]
    passed, table = judge_heldout_psnr({**ok, "thuman": bars["thuman"] - 0.5})
    assert not passed and not table["thuman"]["passed"] and table["facescape"]["passed"]
    passed, table = judge_heldout_psnr({"facescape": 30.0})  # THuman not measured: the check cannot vouch for it
    assert not passed and table["thuman"]["psnr_db"] is None and "no held-out views" in table["thuman"]["note"]


def test_training_inputs_check_fails_without_views_and_on_changed_stores(model_data, tmp_path):
    from storage.views import ViewStore, store_path

    assert not inputs_current(model_data, None).passed
    subjects = ("0003", "0526")
    views = {s: ViewStore.open(store_path(model_data.storage_root, "thuman", "smplx", s)).manifest["content_hash"]
             for s in subjects}
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(json.dumps({"model": {}}))  # a checkpoint that records no training views
    result = inputs_current(model_data, str(ckpt))
    assert not result.passed and "no training views" in result.metadata["reason"].value
    (ckpt / "config.json").write_text(json.dumps({"views": views, "training": {"dataset": "thuman"}}))
    assert inputs_current(model_data, str(ckpt)).passed
    (ckpt / "config.json").write_text(json.dumps({"views": {**views, "0526": "0" * 32},
                                                   "training": {"dataset": "thuman", "topology": "smplx"}}))
    result = inputs_current(model_data, str(ckpt))
    assert not result.passed and set(result.metadata["changed_since_training"].value) == {"0526"}
    current = tmp_path / "current"
    current.mkdir()
    (current / "config.json").write_text(json.dumps({"views": views, "training": {"dataset": "thuman"}}))

    def rec(name, kind, folder):
        return CheckpointRecord(name, kind, "thuman", "smplx", folder, "h")

    refs = {"a": rec("a", "trained", str(ckpt)), "b": rec("b", "trained", str(current)),
            "copy": rec("copy", "baseline", None)}
    both = inputs_current_per_experiment(model_data, refs)
    assert not both.passed and both.metadata["stale_experiments"].value == ["a"]
    assert both.metadata["per_experiment"].value["a"]["changed_since_training"] == {"0526": f"{'0' * 8} -> "
                                                                                    f"{views['0526'][:8]}"}
    assert both.metadata["trained_experiments"].value == 2  # the baseline was not trained on views
    assert inputs_current_per_experiment(model_data, {"b": refs["b"]}).passed


def _tables(protocol, pck=0.8, reid=0.5, ssim=0.9):
    per_view = pd.DataFrame({"psnr": [20.0, 21.0], "ssim": [ssim, 0.8], "masked_psnr": [18.0, 19.0],
                             "silhouette_iou": [0.9, 0.8], "lpips": [0.2, 0.3], "pck": [np.nan, 0.5],
                             "reid": [1.0, np.nan]})
    per_protocol = pd.DataFrame({"protocol": [protocol], "fid": [30.0], "pck": [pck], "reid": [reid],
                                 "missing_metrics": [""]})
    return per_protocol, per_view


def test_metric_checks_cover_face_metrics_on_face_protocols_and_body_pck_on_body_protocols():
    assert {"pck", "reid"} <= set(applicable_metrics("facescape_novel_view", "")[1])
    assert "pck" in applicable_metrics("thuman_novel_view", "")[1]  # (fitted body keypoints, every view)
    assert "reid" not in applicable_metrics("thuman_novel_view", "")[1]
    assert "pck" not in applicable_metrics("thuman_novel_view", "fid,pck")[1]  # (no SMPL-X model: named, excluded)
    no_nan, ranges = judge_tables("facescape_novel_view", *_tables("facescape_novel_view"))
    assert no_nan.passed and ranges.passed  # per-view PCK / Re-ID may be undefined (no face in that ground truth)
    no_nan, _ = judge_tables("facescape_novel_view", *_tables("facescape_novel_view", pck=np.nan))
    assert not no_nan.passed and no_nan.info["columns_with_nan"].value == ["pck"]
    no_nan, _ = judge_tables("thuman_novel_view", *_tables("thuman_novel_view", reid=np.nan))
    assert no_nan.passed  # no Re-ID for bodies
    per_protocol, per_view = _tables("thuman_novel_view", pck=np.nan, reid=np.nan)
    per_protocol["pck_views"] = [0]
    no_nan, _ = judge_tables("thuman_novel_view", per_protocol, per_view)
    assert not no_nan.passed and no_nan.info["columns_with_nan"].value == ["pck"]  # a body set must score PCK
    per_protocol["missing_metrics"] = ["pck"]
    assert judge_tables("thuman_novel_view", per_protocol, per_view)[0].passed
    per_protocol, per_view = _tables("facescape_novel_expression", pck=np.nan, reid=np.nan)
    per_protocol["pck_views"], per_protocol["reid_views"] = [0], [2]  # no ground truth with a face: PCK unjudged
    no_nan, _ = judge_tables("facescape_novel_expression", per_protocol, per_view)
    assert not no_nan.passed and no_nan.info["columns_with_nan"].value == ["reid"]
    assert no_nan.info["no_ground_truth_face"].value == ["pck"]
    _, ranges = judge_tables("demo", *_tables("demo", ssim=1.5))
    assert not ranges.passed and "ssim" in ranges.info["out_of_range"].value


def test_missing_metric_weights_are_excluded_from_the_checks():
    per_protocol, per_view = _tables("demo")
    per_protocol["missing_metrics"] = ["lpips,fid"]
    per_view["lpips"] = np.nan
    per_protocol["fid"] = np.nan
    no_nan, _ = judge_tables("demo", per_protocol, per_view)
    assert no_nan.passed

