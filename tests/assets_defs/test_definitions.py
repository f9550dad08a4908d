"""The Dagster code location loads with one automation condition on every asset, the discovery sensor keeps the
partitions in sync, and subject jobs are reproducible (the main job itself: tests/assets_defs/test_policy.py)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import yaml

REPO = Path(__file__).resolve().parents[2]


def test_definitions_validate_cli(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "dagster", "definitions", "validate", "-m", "assets_defs.definitions"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Validation successful" in proc.stdout + proc.stderr


def test_asset_graph_shape():
    from assets_defs.definitions import defs
    from assets_defs.partitions import EVALUATION_PARTITIONS, EXPERIMENT_PARTITIONS

    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"raw/synthetic_standin", "raw/body_models", "facescape/raw_subject", "thuman/raw_subject",
            "facescape/flame/experiment", "thuman/smplx/experiment", "facescape/raw_inventory", "model/first_stage",
            "facescape/flame/checkpoint", "evaluation/facescape/flame/protocol_views",
            "evaluation/facescape/flame/generated", "evaluation/thuman/smplx/metrics", "evaluation/comparison",
            "facescape/bilinear/views", "facescape/bilinear/checkpoint", "evaluation/facescape/bilinear/metrics"} <= keys
    assert graph.get(dg.AssetKey(["facescape", "flame", "checkpoint"])).partitions_def == \
        EXPERIMENT_PARTITIONS["facescape_flame"]
    assert graph.get(dg.AssetKey(["evaluation", "thuman", "smplx", "generated"])).partitions_def == \
        EVALUATION_PARTITIONS["thuman_smplx"]
    for topology in ("flame", "bilinear"):  # each line reads its own topology's stores, and only those
        views = graph.get(dg.AssetKey(["evaluation", "facescape", topology, "protocol_views"]))
        assert views.partitions_def.get_partition_keys() == ["demo", "facescape_novel_expression",
                                                             "facescape_novel_view"]
        assert views.parent_keys == {dg.AssetKey(["facescape", topology, "views"])}
        assert graph.get(dg.AssetKey(["facescape", topology, "checkpoint"])).parent_keys >= {
            dg.AssetKey(["facescape", topology, "views"])}
        assert dg.AssetKey(["evaluation", "facescape", topology, "protocol_views"]) in \
            graph.get(dg.AssetKey(["evaluation", "facescape", topology, "generated"])).parent_keys
    # the first stage reads each dataset's default topology's views (the images are the same in all of them)
    assert {k for k in graph.get(dg.AssetKey(["model", "first_stage"])).parent_keys} == {
        dg.AssetKey(["facescape", "flame", "views"]), dg.AssetKey(["thuman", "smplx", "views"])}
    materializable = [k for k in graph.get_all_asset_keys() if graph.get(k).is_materializable]
    assert all(graph.get(k).automation_condition is not None for k in materializable)  # one policy: every asset
    assert {j.name for j in defs.resolve_all_job_defs()} >= {"raw_assets", "track_and_render_facescape",
                                                              "train_first_stage", "checkpoints_thuman_smplx",
                                                              "evaluate_facescape_flame",
                                                              "protocol_views_facescape_bilinear",
                                                              "compare_experiments"}
    assert defs.resolve_sensor_def("discovery") is not None and defs.resolve_sensor_def("automation") is not None


def test_model_and_storage_never_import_dagster():
    for layer in ("model", "storage"):
        for path in (REPO / layer).rglob("*.py"):
            text = path.read_text()
            assert "import dagster" not in text and "from dagster" not in text, path


def test_repository_dagster_yaml_configures_the_instance(tmp_path):
    cfg = yaml.safe_load((REPO / "dagster.yaml").read_text())
    assert cfg["run_monitoring"]["free_slots_after_run_end_seconds"] > 0
    assert cfg["telemetry"]["enabled"] is False
    shutil.copyfile(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert instance.run_monitoring_enabled
        instance.event_log_storage.set_concurrency_slots("gpu_heavy", 2)
        assert instance.event_log_storage.get_concurrency_info("gpu_heavy").slot_count == 2


def test_discovery_sensor_adds_partitions_and_requests_observations(embedded):
    from assets_defs.definitions import defs
    from assets_defs.instance import get_instance

    instance = get_instance()
    sensor = defs.resolve_sensor_def("discovery")
    context = dg.build_sensor_context(instance=instance, resources={"settings": defs.resources["settings"]})
    result = sensor(context)
    assert instance.get_dynamic_partitions("facescape_subjects") == ["1", "2", "3", "122"]
    assert len(instance.get_dynamic_partitions("thuman_subjects")) == 6  # (2301, 2401: 2201's other poses)
    assert set(instance.get_dynamic_partitions("facescape_flame_experiments")) == {
        "tiny-facescape", "reference-facescape", "copy-input-facescape",
        "mean-train-facescape"}  # the embedded demo experiments
    assert {r.job_name for r in result.run_requests} == {
        "observe_facescape_raw_subject", "observe_thuman_raw_subject", "observe_facescape_flame_experiment",
        "observe_thuman_smplx_experiment"}  # (no experiment uses the bilinear line: nothing to observe there)
    again = sensor(dg.build_sensor_context(instance=instance, cursor=context.cursor,
                                           resources={"settings": defs.resources["settings"]}))
    assert not again.run_requests  # nothing changed: nothing re-observed


def _data_versions(instance, key, partition):
    recs = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey(key),
                                                                 asset_partitions=[partition]), limit=10).records
    return [r.asset_materialization.tags["dagster/data_version"] for r in recs]


def test_retracking_keeps_data_versions(embedded):
    """A second track run with the same tracker records the same data version (nothing downstream is stale)."""
    from assets_defs.definitions import SUBJECT_JOBS, defs
    from assets_defs.instance import get_instance
    from assets_defs.partitions import SUBJECT_PARTITIONS

    instance = get_instance()
    instance.add_dynamic_partitions(SUBJECT_PARTITIONS["facescape"].name, ["3"])
    job = defs.resolve_job_def(SUBJECT_JOBS["facescape"].name)
    for _ in range(2):
        result = job.execute_in_process(instance=instance, partition_key="3")
        assert result.success
        assert all(c.passed for c in result.get_asset_check_evaluations())
    flame = _data_versions(instance, ["facescape", "flame", "tracks"], "3")
    bilinear = _data_versions(instance, ["facescape", "bilinear", "tracks"], "3")
    assert len(flame) == 2 and flame[0] == flame[1]
    assert len(bilinear) == 2 and bilinear[0] == bilinear[1]
