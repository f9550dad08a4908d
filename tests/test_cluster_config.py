"""Scale-out configuration: the cluster dagster.yaml validates against Dagster's instance schema and the Kubernetes
launcher's own config schema; GPU steps request nvidia.com/gpu; the k8s executor is selectable; and the Postgres
instance storage works against a real PostgreSQL started on loopback (when the server binaries are installed)."""
import json
import os
import subprocess
import sys

import pytest
import yaml

from tests.conftest import REPO

CLUSTER = REPO / "deploy" / "cluster" / "dagster.yaml"
PG_ENV = {"DAGSTER_PG_USERNAME": "dagster", "DAGSTER_PG_PASSWORD": "secret", "DAGSTER_PG_HOST": "127.0.0.1",
          "DAGSTER_PG_DB": "dagster", "MORPHABLE_IMAGE": "registry.example/morphable:gpu"}


def test_cluster_instance_config_validates(monkeypatch):
    from dagster._config import process_config
    from dagster._core.instance.config import dagster_instance_config
    from dagster_k8s import K8sRunLauncher
    from dagster_postgres import PostgresEventLogStorage

    for k, v in PG_ENV.items():
        monkeypatch.setenv(k, v)
    config, _ = dagster_instance_config(str(CLUSTER.parent))
    assert config["storage"]["postgres"]["postgres_db"]["db_name"] == {"env": "DAGSTER_PG_DB"}
    launcher = config["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_k8s", "K8sRunLauncher")
    checked = process_config(K8sRunLauncher.config_type(), launcher["config"])
    assert checked.success, checked.errors
    pg = process_config(PostgresEventLogStorage.config_type(), config["storage"]["postgres"])
    assert pg.success, pg.errors
    assert config["run_monitoring"]["free_slots_after_run_end_seconds"] > 0


def test_gpu_steps_request_gpus_and_k8s_executor_is_selectable():
    from assets_defs.definitions import defs

    graph = defs.get_repository_def().asset_graph
    heavy = [k for k in graph.get_all_asset_keys() if graph.get(k).is_materializable
             and graph.assets_def_for_key(k).op.pool == "gpu_heavy"]
    assert len(heavy) == 5  # first stage, 2 checkpoint assets, 2 evaluation-set assets (partitioned)
    for key in heavy:
        tags = graph.assets_def_for_key(key).op.tags
        res = json.loads(tags["dagster-k8s/config"])["container_config"]["resources"]
        assert res["limits"]["nvidia.com/gpu"] == "1"
    code = ("from assets_defs.definitions import defs; "
            "print(defs.get_repository_def().get_job('raw_assets').executor_def.name)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "MORPHABLE_EXECUTOR": "k8s", "MORPHABLE_TRAIN_GPUS": "4"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "k8s"


@pytest.fixture
def postgres():
    """A throw-away PostgreSQL server on 127.0.0.1 (assets_defs.local_postgres); skipped where none can start."""
    from assets_defs.local_postgres import PostgresUnavailable, throwaway_postgres

    try:
        server = throwaway_postgres()
        port = server.__enter__()
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield port
    finally:
        server.__exit__(None, None, None)


def test_postgres_instance_storage_runs_a_materialization(postgres, tmp_path, monkeypatch):
    import dagster as dg

    cluster = yaml.safe_load(CLUSTER.read_text())
    home = tmp_path / "home"
    home.mkdir()
    local = {"storage": cluster["storage"], "concurrency": cluster["concurrency"], "telemetry": {"enabled": False}}
    local["storage"]["postgres"]["postgres_db"]["port"] = postgres
    (home / "dagster.yaml").write_text(yaml.safe_dump(local))
    for k, v in {**PG_ENV, "DAGSTER_PG_PASSWORD": ""}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("DAGSTER_HOME", str(home))

    @dg.asset(pool="gpu_heavy")
    def probe() -> int:
        return 1

    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        instance.event_log_storage.set_concurrency_slots("gpu_heavy", 2)
        res = dg.materialize([probe], instance=instance)
        assert res.success
        event = instance.get_latest_materialization_event(dg.AssetKey("probe"))
        assert event is not None and event.run_id == res.run_id
        assert instance.event_log_storage.get_concurrency_info("gpu_heavy").slot_count == 2
