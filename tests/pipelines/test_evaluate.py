"""Evaluation stage: tables per view / subject / protocol, deterministic, missing weights named; CLI; assets."""
import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from model.diffusion.ddim import DDIMConfig
from pipelines.evaluate import evaluate_set, load_metric_models
from pipelines.evaluation_sets import generate_eval_set
from storage.eval_sets import EvalSet
from tests.conftest import REPO
from tests.metric_weights import write_random_inception, write_random_vgg

QUIET = dict(log=lambda *_: None)


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    """Metric weight files in the standard key layouts (random values: the real files cannot be downloaded here)."""
    from model.metrics.fid import INCEPTION_FILE
    from model.metrics.lpips_vgg import VGG_FILE

    folder = tmp_path_factory.mktemp("metric_weights")
    write_random_vgg(folder / VGG_FILE)
    write_random_inception(folder / INCEPTION_FILE)
    return folder


@pytest.fixture(scope="module")
def demo_sets(model_data, tmp_path_factory):
    from model.diffusion.config import tiny
    from model.diffusion.network import MorphableDiffusion
    from storage.checkpoints import save_checkpoint

    torch.manual_seed(2)
    model = MorphableDiffusion(tiny())
    ckpt = save_checkpoint(tmp_path_factory.mktemp("ckpt"), "tiny", model.state_dict(),
                           {"model": dataclasses.asdict(model.cfg)})
    gen = generate_eval_set(model_data, "demo", ckpt, sampler=DDIMConfig(steps=2), **QUIET)
    copy = generate_eval_set(model_data, "demo", method="copy_input", **QUIET)
    return ckpt, gen, copy


@pytest.mark.numerics
def test_tables_are_complete_and_deterministic(model_data, demo_sets, weights_dir):
    settings = dataclasses.replace(model_data, metric_weights_dir=weights_dir)
    _, gen, copy = demo_sets
    a = evaluate_set(settings, gen.path, **QUIET)
    b = evaluate_set(settings, gen.path, **QUIET)
    for name in ("per_view", "per_subject", "per_protocol"):
        pd.testing.assert_frame_equal(a.tables[name], b.tables[name])
        assert pd.read_parquet(a.paths[name]).equals(a.tables[name])
    pv = a.tables["per_view"]
    assert len(pv) == 48 and set(pv["item"]) == {"6_jaw_right"} and set(pv["subject"]) == {"1", "2", "3"}
    assert pv[["psnr", "ssim", "lpips", "masked_psnr", "silhouette_iou"]].notna().all().all()
    row = a.tables["per_protocol"].iloc[0]
    assert np.isfinite(row["fid"]) and row["fid"] >= 0 and row["missing_metrics"] == ""
    assert row["psnr"] == pytest.approx(pv["psnr"].mean())
    # the copy baseline's per-view numbers equal scikit-image's on the stored arrays (independent reference)
    from skimage.metrics import structural_similarity

    from model.metrics.image import mask_background

    cb = evaluate_set(settings, copy.path, **QUIET).tables["per_view"]
    pair = next(EvalSet.open(copy.path).pairs())
    gt, masked = pair.arrays["gt"][0], mask_background(pair.arrays["generated"][0], pair.arrays["mask"][0])
    mse = ((gt.astype(np.float64) - masked) ** 2).mean()
    first = cb[(cb["subject"] == pair.info["subject"]) & (cb["view"] == int(pair.arrays["view"][0]))].iloc[0]
    assert first["psnr"] == pytest.approx(10 * np.log10(255 ** 2 / mse), rel=1e-9)
    assert first["ssim"] == pytest.approx(structural_similarity(gt, masked, channel_axis=-1, data_range=255),
                                          rel=1e-6)
    from storage.metric_tables import read_history

    hist = read_history(model_data.storage_root)
    assert {"model", "copy_input"} <= set(hist["method"]) and not hist.duplicated(
        ["protocol", "method", "checkpoint_hash", "eval_set"]).any()


@pytest.mark.numerics
def test_a_set_whose_views_equal_their_ground_truth_scores_perfectly(model_data, demo_sets, weights_dir,
                                                                     tmp_path):
    """Closed form: generated == ground truth gives SSIM 1, LPIPS 0, PSNR at its cap, FID 0 (and a silhouette IoU
    just under 1: near-white foreground pixels count as background by the released white-background rule)."""
    from storage.eval_sets import write_eval_set

    settings = dataclasses.replace(model_data, metric_weights_dir=weights_dir, storage_root=tmp_path / "store")
    src = EvalSet.open(demo_sets[2].path)
    header = {k: v for k, v in src.manifest.items() if k not in ("format", "pairs", "content_hash")}

    def fill(writer):
        for pair in src.pairs():
            arrays = dict(pair.arrays)
            # ground truth white outside its mask (as the released RGBA composites are), generated identical
            arrays["gt"] = np.where(arrays["mask"][..., None] > 0, arrays["gt"], 255).astype(np.uint8)
            arrays["generated"] = arrays["gt"].copy()
            writer.add(pair.key, {k: v for k, v in pair.info.items() if k != "key"}, **arrays)

    write_eval_set(tmp_path / "perfect", {**header, "method": "perfect"}, fill)
    ev = evaluate_set(settings, tmp_path / "perfect", **QUIET)
    pv, row = ev.tables["per_view"], ev.tables["per_protocol"].iloc[0]
    assert np.allclose(pv["ssim"], 1.0) and np.allclose(pv["lpips"], 0.0, atol=1e-6)
    assert (pv["silhouette_iou"] > 0.99).all()
    assert np.allclose(pv["psnr"], 10 * np.log10(255 ** 2 / 1e-12))
    assert row["fid"] == pytest.approx(0.0, abs=1e-3)


def test_missing_weights_disable_only_their_metric(model_data, demo_sets):
    settings = dataclasses.replace(model_data, metric_weights_dir=None)
    models = load_metric_models(settings)
    assert models.lpips is None and models.fid is None
    assert "vgg16-397923af.pth" in models.missing["lpips"] and "metric_weights_dir" in models.missing["fid"]
    ev = evaluate_set(settings, demo_sets[1].path, models, **QUIET)
    row = ev.tables["per_protocol"].iloc[0]
    assert row["missing_metrics"] == "fid,lpips" and np.isnan(row["lpips"]) and np.isnan(row["fid"])
    assert np.isfinite(row["psnr"]) and np.isfinite(row["ssim"])


def test_evaluate_cli_json(model_data, demo_sets, weights_dir):
    env = {**os.environ, "MORPHABLE_SYNTHETIC_ROOT": str(model_data.synthetic_root),
           "MORPHABLE_DATA_ROOT": str(model_data.data_root), "MORPHABLE_STORAGE_ROOT": str(model_data.storage_root),
           "MORPHABLE_METRIC_WEIGHTS_DIR": str(weights_dir)}
    proc = subprocess.run([sys.executable, "-m", "pipelines.cli", "evaluate", "--protocol", "demo", "--checkpoint",
                           str(demo_sets[0]), "--steps", "2", "--json"], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout)
    assert doc["protocol"] == "demo" and doc["views"] == 48 and doc["lpips"] is not None
    bad = subprocess.run([sys.executable, "-m", "pipelines.cli", "evaluate", "--protocol", "nope", "--checkpoint",
                          str(demo_sets[0])], env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "invalid choice: 'nope'" in bad.stderr


def test_comparison_has_one_row_per_experiment_and_checkpoint():
    import math

    from pipelines.comparison import comparison_table

    rows = [{"dataset": "facescape", "topology": "flame", "experiment": "a", "kind": "trained",
             "checkpoint_hash": "h1", "protocol": "demo", "psnr": 20.0, "pck": 0.7},
            {"dataset": "facescape", "topology": "flame", "experiment": "a", "kind": "trained",
             "checkpoint_hash": "h1", "protocol": "facescape_novel_view", "psnr": 21.0, "pck": 0.8},
            {"dataset": "facescape", "topology": "flame", "experiment": "copy", "kind": "baseline",
             "checkpoint_hash": "b64", "protocol": "demo", "psnr": 11.0, "pck": 0.2},
            {"dataset": "thuman", "topology": "smplx", "experiment": "t", "kind": "published", "checkpoint_hash": "h2",
             "protocol": "thuman_novel_view", "psnr": 18.0}]
    table = comparison_table(rows)
    assert list(zip(table["dataset"], table["topology"], table["experiment"], table["kind"])) == [
        ("facescape", "flame", "a", "trained"), ("facescape", "flame", "copy", "baseline"),
        ("thuman", "smplx", "t", "published")]
    assert table.loc[0, "demo/psnr"] == 20.0 and table.loc[0, "facescape_novel_view/pck"] == 0.8
    assert table.loc[1, "demo/psnr"] == 11.0 and math.isnan(table.loc[1, "facescape_novel_view/psnr"])
    assert table.loc[2, "thuman_novel_view/psnr"] == 18.0 and math.isnan(table.loc[2, "thuman_novel_view/pck"])
    assert "demo/lpips" in table  # a metric no row measured keeps its column
