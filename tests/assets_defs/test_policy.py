"""The main job is the policy, through a real Dagster instance (asserted from its event log): `morphable demo` runs
what the assets' automation conditions request until nothing more is; a second run does nothing; experiments are
partitions whose evaluations read exactly their own checkpoint; a changed raw file re-runs exactly its subject."""
import shutil
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from tests.conftest import REPO, TESTDATA
from tests.ui import CHROMIUM, CHROMIUM_ARGS, LOCATION, dagster_ui, wait_for_run

pytestmark = pytest.mark.slow


def _materializations(instance, after: int = 0) -> list[tuple[str, str | None]]:
    """(asset key, partition) of every materialization recorded after storage id `after`."""
    out = []
    for key in instance.get_asset_keys():
        for r in instance.fetch_materializations(key, limit=10000).records:
            if r.storage_id > after:
                out.append((key.to_user_string(), r.partition_key))
    return sorted(out)


def _last_storage_id(instance) -> int:
    ids = [r.storage_id for key in instance.get_asset_keys()
           for r in instance.fetch_materializations(key, limit=10000).records]
    return max(ids, default=0)


@pytest.fixture(scope="module")
def world(tmp_path_factory, standin_root):
    """A stand-in copy (so a raw file can change), a persistent instance and an experiments file."""
    root = tmp_path_factory.mktemp("policy")
    data = root / "synthetic"
    shutil.copytree(standin_root, data)
    experiments = root / "experiments.toml"
    shutil.copyfile(TESTDATA / "experiments_smoke.toml", experiments)
    env = {"DAGSTER_HOME": str(root / "home"), "MORPHABLE_SYNTHETIC_ROOT": str(data),
           "MORPHABLE_DATA_ROOT": str(root / "data"), "MORPHABLE_EXPERIMENTS_FILE": str(experiments),
           "CUDA_VISIBLE_DEVICES": ""}
    mp = pytest.MonkeyPatch()
    mp.delenv("MORPHABLE_SETTINGS", raising=False)
    for k, v in env.items():
        mp.setenv(k, v)
    state: dict = {"root": root, "data": data, "experiments": experiments}
    yield state
    mp.undo()


def _instance():
    from assets_defs.instance import get_instance

    return get_instance()


def test_first_run_materializes_the_whole_graph(world):
    from assets_defs.demo import run_demo

    result = run_demo(log=lambda *_: None)
    assert not result.policy.failed, [r.label for r in result.policy.failed]
    assert set(result.materialized) == {
        "raw/synthetic_standin", "raw/body_models", "facescape/raw_inventory", "thuman/raw_inventory",
        "facescape/flame/tracks", "facescape/bilinear/tracks", "thuman/smplx/tracks", "facescape/flame/views",
        "thuman/smplx/views", "model/first_stage", "facescape/flame/checkpoint", "thuman/smplx/checkpoint",
        "evaluation/facescape/flame/protocol_views", "evaluation/thuman/smplx/protocol_views",
        "evaluation/facescape/flame/generated", "evaluation/facescape/flame/metrics",
        "evaluation/thuman/smplx/generated", "evaluation/thuman/smplx/metrics", "evaluation/facescape/flame/animation",
        "evaluation/comparison"}
    # (no experiment uses the bilinear topology here: its tracks exist, its views are never rendered)
    failed = {name for name, passed in result.checks.items() if not passed}
    assert failed == {"model/first_stage:heldout_psnr"}  # 3 first-stage steps reach no bar, and it says so
    assert result.subject_partitions == {"facescape": 4, "thuman": 6}  # (2301, 2401: 2201 in other poses)
    assert result.experiment_partitions == {"facescape_flame": 2, "facescape_bilinear": 0, "thuman_smplx": 1}
    table = result.comparison
    assert sorted(table["experiment"]) == ["copy-input-facescape", "smoke-facescape", "smoke-facescape:no_mesh",
                                           "smoke-thuman"]  # one row each, the ablation's included
    ablation = table.set_index("experiment").loc["smoke-facescape:no_mesh"]
    assert ablation.notna()["facescape_novel_view/masked_psnr"] and ablation.isna()["demo/masked_psnr"]
    assert {"demo/masked_psnr", "facescape_novel_view/psnr", "thuman_novel_view/ssim", "thuman_novel_pose/iou_input_mesh"
            } <= set(table.columns)
    instance = _instance()
    evals = instance.fetch_materializations(dg.AssetKey(["evaluation", "facescape", "flame", "metrics"]), limit=100).records
    assert {r.partition_key for r in evals} == {f"{e}|{p}" for e in ("smoke-facescape", "copy-input-facescape")
                                                for p in ("demo", "facescape_novel_expression",
                                                          "facescape_novel_view")}
    runs = instance.get_runs(dg.RunsFilter(tags={"morphable/policy": "demo"}))
    assert len(runs) == len(result.policy.runs) and all(r.tags["dagster/from_automation_condition"] for r in runs)
    # the GPU steps as the policy ran them (in the step's process on this CPU machine; in the Pipes worker they report
    # the same: tests/assets_defs/test_gpu_assets.py), with metadata and data versions, each handing its output
    # reference to the next partition

    def latest(key, partition=None):
        recs = instance.fetch_materializations(dg.AssetKey(key), limit=100).records
        return next(r for r in recs if r.partition_key == partition).asset_materialization

    fs = latest(["model", "first_stage"]).metadata
    assert fs["device"].value.startswith("cpu") and "psnr_heldout" in fs and fs["steps"].value == 3
    ck = latest(["facescape", "flame", "checkpoint"], "smoke-facescape")
    assert ck.tags["dagster/data_version"] == ck.metadata["checkpoint_hash"].value
    assert {"loss_curve", "training_views", "tensorboard"} <= set(ck.metadata)
    assert set(ck.metadata["training_views"].value) == {"1", "2", "3"}
    gen = latest(["evaluation", "facescape", "flame", "generated"], "smoke-facescape|demo").metadata
    assert gen["checkpoint_hash"].value == ck.metadata["checkpoint_hash"].value
    assert gen["views"].value == 48 and gen["sample"].value.startswith("![")
    assert "ablation_sets" not in gen  # (the demo protocol's training identities: no ablations)
    nv = latest(["evaluation", "facescape", "flame", "generated"], "smoke-facescape|facescape_novel_view").metadata
    assert set(nv["ablation_sets"].value) == {"no_mesh"}
    # the animation the experiment declares, and only it, with its strip, video and scores per sampler
    animation = dg.AssetKey(["evaluation", "facescape", "flame", "animation"])
    assert {r.partition_key for r in instance.fetch_materializations(animation, limit=10).records} == {
        "smoke-facescape|heldout_smile"}
    anim = latest(["evaluation", "facescape", "flame", "animation"], "smoke-facescape|heldout_smile").metadata
    assert anim["strip"].value.startswith("![front view over time") and Path(anim["video"].value).is_file()
    assert anim["sampler"].value == "shared_noise" and anim["warping_error_ratio_vs_independent"].value > 1
    rows = pd.read_parquet(Path(result.pictures["comparison table and plot"]) / "animation.parquet")
    assert sorted(rows["sampler"]) == ["ground_truth", "independent", "shared_noise"]
    assert (rows.set_index("sampler")["warping_error"]["independent"]
            > rows.set_index("sampler")["warping_error"]["shared_noise"])
    frames = pd.read_parquet(Path(anim["dagster/uri"].value) / "frames.parquet")
    assert len(frames) == 3 * 8 and frames[frames["sampler"] != "ground_truth"]["masked_psnr"].notna().all()
    world["first"] = result


def test_second_run_does_nothing(world):
    from assets_defs.demo import run_demo

    instance = _instance()
    before = _last_storage_id(instance)
    started = time.perf_counter()
    result = run_demo(log=lambda *_: None)
    seconds = time.perf_counter() - started
    assert result.policy.runs == [] and result.policy.observations == 0
    assert _materializations(instance, before) == []
    assert seconds < 30, seconds


def test_a_changed_animation_sampler_re_animates_only_its_partition(world):
    """`animation = {...}` is not in the experiment's digest (its checkpoint does not retrain), yet the declared
    animation it samples is requested again, and nothing else; restored, nothing is."""
    from assets_defs.definitions import defs

    instance = _instance()
    key = dg.AssetKey(["evaluation", "facescape", "flame", "animation"])
    everything = dg.AssetSelection.all()
    settled = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=everything)
    assert settled.total_requested == 0
    original = world["experiments"].read_text()
    changed = original.replace('animations = ["heldout_smile"]',
                               'animations = ["heldout_smile"]\nanimation = { mode = "warm_start", strength = 0.5 }')
    assert changed != original
    try:
        world["experiments"].write_text(changed)
        after = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=everything,
                                                  cursor=settled.cursor)
        assert after.get_requested_partitions(key) == {"smoke-facescape|heldout_smile"}
        assert after.total_requested == 1  # (no checkpoint, evaluation or comparison)
    finally:
        world["experiments"].write_text(original)
    restored = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=everything,
                                                 cursor=after.cursor)
    assert restored.total_requested == 0


def test_a_changed_raw_file_reruns_exactly_its_subject_and_the_protocols_that_read_it(world):
    """Two scans change: a thuman training subject's (its subject re-runs, every protocol records the stores it reads
    again, none changed, so no evaluation set is regenerated; the checkpoint's check reports the training views as
    changed) and a facescape held-out subject's (re-tracked: exactly the protocols that read it are evaluated again,
    for every experiment, and the comparison follows)."""
    from assets_defs.demo import run_demo
    from storage.meshes import Mesh, read_obj, read_ply, write_obj, write_ply

    instance = _instance()
    mesh_path = Path(world["data"]) / "thuman" / "model" / "0526" / "0526.obj"
    mesh = read_obj(mesh_path)
    write_obj(mesh_path, Mesh(mesh.vertices * 1.01, mesh.faces, mesh.uv, mesh.uv_faces,
                              material_file=mesh.material_file))  # the scan rescaled: a raw change of 0526
    scan_path = Path(world["data"]) / "facescape" / "122" / "2_smile.ply"
    scan = read_ply(scan_path)
    write_ply(scan_path, Mesh(scan.vertices * 1.01, scan.faces))  # a held-out subject's scan: re-tracked
    before = _last_storage_id(instance)
    result = run_demo(log=lambda *_: None)
    assert not result.policy.failed
    new = _materializations(instance, before)
    held_out = ("facescape_novel_expression", "facescape_novel_view")
    assert sorted(new) == sorted(
        [(f"thuman/{a}", "0526") for a in ("raw_inventory", "smplx/tracks", "smplx/views")]
        + [("evaluation/thuman/smplx/protocol_views", p) for p in ("thuman_novel_view", "thuman_novel_pose")]
        + [(f"facescape/{a}", "122") for a in ("raw_inventory", "flame/tracks", "bilinear/tracks", "flame/views")]
        + [("evaluation/facescape/flame/protocol_views", p) for p in ("demo", *held_out)]
        + [(f"evaluation/facescape/flame/{a}", f"{e}|{p}") for a in ("generated", "metrics")
           for e in ("smoke-facescape", "copy-input-facescape") for p in held_out]
        + [("evaluation/comparison", None)])
    sets = instance.fetch_materializations(dg.AssetKey(["evaluation", "facescape", "flame", "generated"]), limit=100).records
    latest = {}
    for r in sets:  # (newest first)
        latest.setdefault(r.partition_key, r.asset_materialization.metadata)
    views = instance.fetch_materializations(dg.AssetKey(["evaluation", "facescape", "flame", "protocol_views"]),
                                            limit=100).records
    digests = {}
    for r in views:
        digests.setdefault(r.partition_key, []).append(r.asset_materialization.tags["dagster/data_version"])
    assert digests["demo"][0] == digests["demo"][1]  # the demo protocol reads training identities only
    assert all(digests[p][0] != digests[p][1] for p in held_out)
    for e in ("smoke-facescape", "copy-input-facescape"):  # each new set names the store record it read
        assert all(latest[f"{e}|{p}"]["protocol_views"].value == digests[p][0] for p in held_out)
        assert latest[f"{e}|demo"]["protocol_views"].value == digests["demo"][0]
    failing = [name for name, passed in result.checks.items() if not passed and "training_inputs_current" in name]
    assert failing == ["thuman/smplx/checkpoint:training_inputs_current"]
    check = dg.AssetCheckKey(dg.AssetKey(["thuman", "smplx", "checkpoint"]), "training_inputs_current")
    latest = instance.event_log_storage.get_asset_check_execution_history(check, limit=1)[0]
    metadata = latest.event.dagster_event.event_specific_data.metadata
    assert metadata["stale_experiments"].value == ["smoke-thuman"]
    assert set(metadata["per_experiment"].value["smoke-thuman"]["changed_since_training"]) == {"0526"}




def test_a_second_experiment_and_re_evaluating_the_first(world):
    """Two trained experiments coexist; re-evaluating the first after the second exists reads the first's
    checkpoint (its rows carry the first's hash), not the most recent checkpoint of the asset."""
    from assets_defs.definitions import EVALUATION_JOBS, defs
    from assets_defs.demo import run_demo

    text = world["experiments"].read_text()
    world["experiments"].write_text(text + '''
[experiments.smoke-facescape-b]
kind = "trained"
dataset = "facescape"
topology = "flame"
training = { preset = "tiny", steps = 3, batch_size = 2, loss_views = 1, ckpt_every = 3, preview_steps = 0, warmup_steps = 2, seed = 7 }
sampler = { steps = 2, cfg_scale = 1.0 }
''')
    instance = _instance()
    before = _last_storage_id(instance)
    result = run_demo(log=lambda *_: None)
    assert not result.policy.failed
    new = _materializations(instance, before)
    # exactly the new experiment's checkpoint, its evaluations and the comparison: nothing of the first's
    assert {k for k, p in new} == {"facescape/flame/checkpoint", "evaluation/facescape/flame/generated",
                                   "evaluation/facescape/flame/metrics", "evaluation/comparison"}
    assert all(p is None or p.startswith("smoke-facescape-b") for _, p in new)
    hashes = {}
    for rec in instance.fetch_materializations(dg.AssetKey(["facescape", "flame", "checkpoint"]), limit=100).records:
        hashes.setdefault(rec.partition_key, rec.asset_materialization.tags["dagster/data_version"])
    assert hashes["smoke-facescape"] != hashes["smoke-facescape-b"]
    world["b_hash"] = hashes["smoke-facescape-b"]
    job = defs.resolve_job_def(EVALUATION_JOBS["facescape_flame"].name)
    again = job.execute_in_process(instance=instance, partition_key="smoke-facescape|demo",
                                   run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}})
    assert again.success
    metrics = [e.event_specific_data.materialization for e in again.get_asset_materialization_events()
               if e.event_specific_data.materialization.asset_key == dg.AssetKey(["evaluation", "facescape", "flame",
                                                                                     "metrics"])][0]
    assert metrics.metadata["checkpoint_hash"].value == hashes["smoke-facescape"]
    from pipelines.settings import load_settings
    from storage.metric_tables import read_history

    hist = read_history(load_settings().storage_root)
    rows = hist[(hist["experiment"] == "smoke-facescape") & (hist["protocol"] == "demo")]
    assert set(rows["checkpoint_hash"]) == {hashes["smoke-facescape"]}
    comparison = pd.read_parquet(load_settings().storage_root / "metrics" / "comparison.parquet")
    assert set(comparison["experiment"]) >= {"smoke-facescape", "smoke-facescape-b"}


def test_a_published_checkpoint_and_an_earlier_one_pinned_by_hash_are_experiments(world):
    """A released-layout Lightning .ckpt (tiny preset, written here) named in the experiments file: the policy imports
    it as that experiment's checkpoint and evaluates it through the same assets, into the same tables. In the same
    edit smoke-facescape-b is retrained (another seed) and its earlier checkpoint, named by its hash, is kept as an
    experiment: both are evaluated, side by side in the comparison, each row with its own hash."""
    import torch

    from assets_defs.demo import run_demo
    from model.diffusion.config import tiny
    from model.diffusion.network import MorphableDiffusion
    from tests.pipelines.test_import_checkpoint import lightning_checkpoint

    torch.manual_seed(5)
    ckpt = lightning_checkpoint(MorphableDiffusion(tiny()).state_dict(), path=world["root"] / "released.ckpt")
    text = world["experiments"].read_text()
    assert text.count("seed = 7 }") == 1
    world["experiments"].write_text(text.replace("seed = 7 }", "seed = 8 }") + f'''
[experiments.released-facescape]
kind = "published"
dataset = "facescape"
topology = "flame"
file = "{ckpt}"
sampler = {{ steps = 2, cfg_scale = 1.0 }}

[experiments.smoke-facescape-b-seed7]
kind = "published"
dataset = "facescape"
topology = "flame"
checkpoint = "{world["b_hash"][:12]}"
sampler = {{ steps = 2, cfg_scale = 1.0 }}
''')
    instance = _instance()
    before = _last_storage_id(instance)
    result = run_demo(log=lambda *_: None)
    assert not result.policy.failed, [r.label for r in result.policy.failed]
    new = _materializations(instance, before)
    protocols = ("demo", "facescape_novel_expression", "facescape_novel_view")
    experiments = ("released-facescape", "smoke-facescape-b", "smoke-facescape-b-seed7")
    assert sorted(new) == sorted([("facescape/flame/checkpoint", e) for e in experiments] + [("evaluation/comparison", None)]
                                 + [(f"evaluation/facescape/flame/{a}", f"{e}|{p}") for a in ("generated", "metrics")
                                    for e in experiments for p in protocols])
    rec = instance.fetch_materializations(dg.AssetKey(["facescape", "flame", "checkpoint"]), limit=100).records
    latest = {}
    for r in rec:
        latest.setdefault(r.partition_key, r.asset_materialization)
    from storage.hashing import hash_file

    assert latest["released-facescape"].metadata["source_sha256"].value == hash_file(ckpt)
    newer = latest["smoke-facescape-b"].tags["dagster/data_version"]
    assert newer != world["b_hash"] and latest["smoke-facescape-b-seed7"].tags["dagster/data_version"] == world["b_hash"]
    table = result.comparison
    row = table[table["experiment"] == "released-facescape"]
    assert len(row) == 1 and row["kind"].item() == "published" and row["demo/masked_psnr"].notna().item()
    rows = table.set_index("experiment").loc[["smoke-facescape-b", "smoke-facescape-b-seed7"]]
    assert list(rows["checkpoint_hash"]) == [newer, world["b_hash"]], rows["checkpoint_hash"]
    assert rows["demo/masked_psnr"].notna().all()
    from pipelines.settings import load_settings
    from storage.metric_tables import read_history

    hist = read_history(load_settings().storage_root)
    b = hist[hist["experiment"].isin(["smoke-facescape-b", "smoke-facescape-b-seed7"]) & (hist["protocol"] == "demo")]
    assert set(b["checkpoint_hash"]) == {newer, world["b_hash"]}


def test_a_bilinear_experiment_trains_and_evaluates_on_bilinear_views(world):
    """The topology ablation through the policy: a tiny experiment on FaceScape's bilinear (TU) meshes renders that
    topology's view stores (tracked all along, never rendered while no experiment used them), trains on them and is
    evaluated on them, with the bilinear meshes' silhouettes; nothing of the FLAME line re-runs, and the comparison
    shows both experiments' rows, each with its topology."""
    import numpy as np

    from assets_defs.demo import run_demo
    from pipelines.settings import load_settings
    from storage.eval_sets import EvalSet
    from storage.jsonfile import read_json
    from storage.views import ViewStore, store_path, store_subjects

    root = load_settings().storage_root
    assert store_subjects(root, "facescape", "bilinear") == []  # no experiment used it until now
    world["experiments"].write_text(world["experiments"].read_text() + '''
[experiments.smoke-bilinear]
kind = "trained"
dataset = "facescape"
topology = "bilinear"
training = { preset = "tiny", steps = 2, batch_size = 2, loss_views = 2, ckpt_every = 2, preview_steps = 0, warmup_steps = 2 }
sampler = { steps = 2, cfg_scale = 1.0 }
''')
    instance = _instance()
    before = _last_storage_id(instance)
    result = run_demo(log=lambda *_: None)
    assert not result.policy.failed, [r.label for r in result.policy.failed]
    subjects, protocols = ("1", "2", "3", "122"), ("demo", "facescape_novel_expression", "facescape_novel_view")
    assert sorted(_materializations(instance, before)) == sorted(
        [("facescape/bilinear/views", s) for s in subjects]
        + [("evaluation/facescape/bilinear/protocol_views", p) for p in protocols]
        + [("facescape/bilinear/checkpoint", "smoke-bilinear"), ("evaluation/comparison", None)]
        + [(f"evaluation/facescape/bilinear/{a}", f"smoke-bilinear|{p}") for a in ("generated", "metrics")
           for p in protocols])
    stores = {}
    for s in subjects:  # the same images and cameras, the other topology's meshes
        flame, bilinear = (ViewStore.open(store_path(root, "facescape", t, s)) for t in ("flame", "bilinear"))
        assert (flame.attrs["topology"], bilinear.attrs["topology"]) == ("flame", "bilinear")
        assert np.array_equal(flame.rgb_many(np.arange(len(flame))), bilinear.rgb_many(np.arange(len(bilinear))))
        assert np.array_equal(flame.RT, bilinear.RT) and flame.items == bilinear.items
        item = flame.items[0]
        assert len(flame.geometry(item).vertices) != len(bilinear.geometry(item).vertices)
        assert flame.manifest["content_hash"] != bilinear.manifest["content_hash"]
        stores[s] = bilinear.manifest["content_hash"]

    def latest(key, partition):
        recs = instance.fetch_materializations(dg.AssetKey(key), limit=100).records
        return next(r for r in recs if r.partition_key == partition).asset_materialization

    ck = latest(["facescape", "bilinear", "checkpoint"], "smoke-bilinear")
    config = read_json(Path(ck.metadata["dagster/uri"].value) / "config.json")
    assert config["training"]["topology"] == "bilinear"
    assert config["views"] == {s: stores[s] for s in ("1", "2", "3")}  # the bilinear stores it trained on
    for p in protocols:
        sets = {t: EvalSet.open(latest(["evaluation", "facescape", t, "generated"],
                                       f"{e}|{p}").metadata["dagster/uri"].value)
                for t, e in (("flame", "smoke-facescape"), ("bilinear", "smoke-bilinear"))}
        assert {t: es.manifest["topology"] for t, es in sets.items()} == {"flame": "flame", "bilinear": "bilinear"}
        assert sets["flame"].path != sets["bilinear"].path
        masks = {t: next(es.pairs()).arrays["mesh_mask_target"] for t, es in sets.items()}
        assert not np.array_equal(masks["flame"], masks["bilinear"])  # silhouettes of each topology's mesh
    table = result.comparison.set_index("experiment")
    assert table.loc["smoke-bilinear", "topology"] == "bilinear" and table.loc["smoke-facescape", "topology"] == "flame"
    assert table.loc[["smoke-bilinear", "smoke-facescape"], "demo/masked_psnr"].notna().all()


def _sensor_ticks(url: str, name: str) -> list[dict]:
    """The last ticks of sensor `name`, newest first, from the webserver's GraphQL."""
    import requests

    query = ('{ sensorOrError(sensorSelector: {repositoryLocationName: "%s", repositoryName: "__repository__", '
             'sensorName: "%s"}) { __typename ... on Sensor { sensorState { ticks(limit: 20) { status timestamp '
             'endTimestamp runIds error { message } } } } } }' % (LOCATION, name))
    doc = requests.post(f"{url}/graphql", json={"query": query}, timeout=30).json()["data"]["sensorOrError"]
    assert doc["__typename"] == "Sensor", doc
    return doc["sensorState"]["ticks"]


def _launch_partition_in_ui(page, url: str, asset: str, partition: str) -> None:
    """Materialize… on the asset page, the partition picked in the launch dialog, Launch 1 run."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.goto(f"{url}/assets/{asset}", wait_until="networkidle")
    dialog = page.locator(".dagster-dialog")
    for attempt in range(3):  # a fresh instance's newsletter prompt can swallow the click (its handler skips it)
        page.get_by_role("button", name="Materialize").first.click()
        try:
            dialog.get_by_text("Partition selection").wait_for(timeout=15000)
            break
        except PlaywrightTimeout:
            if attempt == 2:
                raise
    dialog.get_by_text("Select a partition or create one").click()
    page.keyboard.type(partition)
    page.get_by_role("menuitem").filter(has_text=partition).filter(has_not_text="Add partition").first.click()
    dialog.get_by_text("Launch runs to materialize").click()  # closes the partition picker, keeps the dialog
    dialog.get_by_role("button", name="Launch 1 run").click()
    dialog.wait_for(state="hidden", timeout=60000)


@pytest.mark.e2e
@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (scripts/bootstrap.sh installs it "
                                             "as root: apt-get install chromium)")
def test_ui_launches_a_partition_and_shows_thumbnails_and_the_comparison(world, tmp_path):
    """The daemon (sensors on) on the policy's settled instance, and Chromium on the webserver: a checkpoint partition
    launched from its asset page runs under the daemon and reproduces its data version; a views thumbnail on the
    asset page and the comparison table across experiments (screenshots in the test folder; MORPHABLE_UPDATE_DOCS=1
    also refreshes the README's). Meanwhile the daemon's own sensors agree the graph is settled: the discovery
    sensor's observations change no data version, and no automation tick requests a run."""
    import os

    from dagster_graphql import DagsterGraphQLClient
    from playwright.sync_api import sync_playwright

    from assets_defs.sensors import OBSERVE_JOBS

    instance = _instance()
    before = {r.run_id for r in instance.get_runs()}
    checkpoint = dg.AssetKey(["thuman", "smplx", "checkpoint"])
    old_version = instance.get_latest_materialization_event(checkpoint).tags["dagster/data_version"]
    env = {k: v for k, v in os.environ.items() if k != "MORPHABLE_SETTINGS"} | {"MORPHABLE_SENSORS": "on"}
    with dagster_ui(env, tmp_path) as (url, port):
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            # the newsletter prompt of a fresh instance may cover the page at any moment: dismiss it whenever shown
            page.add_locator_handler(page.get_by_role("button", name="Skip"),
                                     lambda skip: skip.dispatch_event("click"))  # (even under another dialog)
            _launch_partition_in_ui(page, url, "thuman/smplx/checkpoint", "smoke-thuman")
            shots = {}
            for name, path, marker, alt in (
                    ("ui_asset_page.png", "thuman/smplx/views?view=partitions&partition=1024", "contact_sheet", "views"),
                    ("ui_comparison.png", "evaluation/comparison", "comparison", None)):
                page.goto(f"{url}/assets/{path}", wait_until="networkidle")
                page.get_by_text(marker, exact=True).first.wait_for(timeout=60000)
                page.get_by_text("[Show Markdown]").first.click(timeout=30000)
                if alt:
                    img = page.locator('img[src^="data:image/png;base64"]').first
                    img.wait_for(timeout=30000)
                    box = img.bounding_box()
                    assert box and box["width"] > 100 and box["height"] > 50 and img.get_attribute("alt") == alt
                else:
                    page.get_by_text("smoke-facescape").first.wait_for(timeout=30000)
                page.wait_for_timeout(300)
                shots[name] = tmp_path / name
                page.screenshot(path=str(shots[name]))
                page.keyboard.press("Escape")
            browser.close()
        launched = [r for r in instance.get_runs() if r.run_id not in before
                    and r.tags.get("dagster/partition") == "smoke-thuman"]
        assert len(launched) == 1, [r.tags for r in launched]  # the dialog closed once the run was submitted
        assert wait_for_run(DagsterGraphQLClient("127.0.0.1", port_number=port), launched[0].run_id) == "SUCCESS"
        ended = instance.get_run_record_by_id(launched[0].run_id).end_time
        deadline = time.monotonic() + 240
        while True:  # an automation tick evaluated after the run ended, and the discovery's observations done
            ticks = _sensor_ticks(url, "automation")
            flying = [r for r in instance.get_runs() if r.run_id not in before and not r.is_finished]
            if not flying and any(t["timestamp"] > ended and t["endTimestamp"] for t in ticks):
                break
            assert time.monotonic() < deadline, (ticks[:3], [r.job_name for r in flying])
            time.sleep(3)
        discovery = _sensor_ticks(url, "discovery")
    assert not [t for t in ticks if t["error"]], [t["error"] for t in ticks if t["error"]]
    assert discovery and not [t for t in discovery if t["error"]], discovery[:2]
    new = [r for r in instance.get_runs() if r.run_id not in before]
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in new), [(r.job_name, r.status) for r in new]
    automated = [r.job_name for r in new if r.tags.get("dagster/from_automation_condition")]
    assert automated == [], f"the daemon found work on a settled instance: {automated}"
    observations = {job.name for job in OBSERVE_JOBS.values()}
    assert {r.job_name for r in new} - {launched[0].job_name} <= observations, [r.job_name for r in new]
    assert instance.get_latest_materialization_event(checkpoint).tags["dagster/data_version"] == old_version
    if os.environ.get("MORPHABLE_UPDATE_DOCS") == "1":
        for name, shot in shots.items():
            shutil.copyfile(shot, REPO / "docs" / name)
