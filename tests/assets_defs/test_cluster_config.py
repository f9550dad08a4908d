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
    from assets_defs.animation import ANIMATION_ASSETS
    from assets_defs.partitions import LINES

    # first stage; per line its checkpoints and evaluation sets; per face line with sequences, its animations
    assert len(heavy) == 1 + 2 * len(LINES) + len(ANIMATION_ASSETS) and ANIMATION_ASSETS
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


def _step_pod(asset_key: list[str], tmp_path, monkeypatch):
    """The pod of one step as dagster-k8s builds it for the k8s executor: the launcher's container context from the
    cluster dagster.yaml, merged with the step's `dagster-k8s/config` op tags, through its own job construction."""
    import dagster as dg
    from dagster._config import process_config
    from dagster_k8s import K8sRunLauncher
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.job import construct_dagster_k8s_job, get_user_defined_k8s_config

    from assets_defs.definitions import defs

    for k, v in PG_ENV.items():
        monkeypatch.setenv(k, v)
    kubeconfig = tmp_path / "kubeconfig"  # a cluster nobody calls: construction only
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u", "namespace": "morphable"}}]}))
    config = yaml.safe_load(CLUSTER.read_text())["run_launcher"]["config"]
    config.update(load_incluster_config=False, kubeconfig_file=str(kubeconfig))
    checked = process_config(K8sRunLauncher.config_type(), config)
    assert checked.success, checked.errors
    launcher = K8sRunLauncher(**checked.value)
    op_tags = defs.resolve_asset_graph().assets_def_for_key(dg.AssetKey(asset_key)).op.tags
    run = dg.DagsterRun(job_name="checkpoints_facescape", run_id="0f0f0f0f-0000-4000-8000-000000000000")
    context = K8sContainerContext.create_for_run(run, launcher, include_run_tags=False).merge(
        K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(op_tags)))
    job = construct_dagster_k8s_job(context.get_k8s_job_config(None, launcher), args=["dagster", "api", "execute_step"],
                                    job_name="dagster-step-test", pod_name="dagster-step-test",
                                    component="step_worker", user_defined_k8s_config=context.run_k8s_config)
    return job.spec.template.spec, launcher


def test_a_checkpoint_step_pod_requests_a_gpu_mounts_the_data_and_runs_the_image(tmp_path, monkeypatch):
    pod, launcher = _step_pod(["facescape", "flame", "checkpoint"], tmp_path, monkeypatch)
    container = pod.containers[0]
    assert container.image == PG_ENV["MORPHABLE_IMAGE"]
    assert container.resources.limits["nvidia.com/gpu"] == "1"
    assert container.resources.requests["nvidia.com/gpu"] == "1"
    volumes = {v.name: v for v in pod.volumes}
    assert volumes["data"].persistent_volume_claim.claim_name == "morphable-data"
    mounts = {m.name: m.mount_path for m in container.volume_mounts}
    assert mounts["data"] == "/data"
    # the pod's DAGSTER_HOME is where the image put the cluster dagster.yaml (deploy/Dockerfile)
    env = {e.name: e.value for e in container.env}
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    assert env["DAGSTER_HOME"] == launcher.dagster_home
    assert f"DAGSTER_HOME={launcher.dagster_home}" in dockerfile
    assert 'cp deploy/cluster/dagster.yaml "$DAGSTER_HOME/dagster.yaml"' in dockerfile
    sources = {(s.config_map_ref.name if s.config_map_ref else None, s.secret_ref.name if s.secret_ref else None)
               for s in container.env_from}
    assert ("morphable-settings", None) in sources and (None, "dagster-postgres") in sources
    assert pod.service_account_name == "dagster"


def test_a_cpu_step_pod_asks_for_no_gpu(tmp_path, monkeypatch):
    pod, _ = _step_pod(["facescape", "flame", "views"], tmp_path, monkeypatch)
    resources = pod.containers[0].resources
    assert not (resources and resources.limits and "nvidia.com/gpu" in resources.limits)
    assert {v.name for v in pod.volumes} >= {"data"}


VALUES = REPO / "deploy" / "cluster" / "values.yaml"
STORAGE = REPO / "deploy" / "cluster" / "storage.yaml"


def _camel_to_snake(d: dict) -> dict:
    import re

    return {re.sub(r"(?<!^)([A-Z])", r"_\1", k).lower(): v for k, v in d.items()}


def test_the_chart_values_say_what_the_cluster_instance_says(monkeypatch):
    """The Helm values and deploy/cluster/dagster.yaml are two ways to the same instance: the same data volume, settings
    config map, retry policy, monitoring and run cap; the code location runs the module the image serves, and its
    environment selects the pod-per-step executor, turns the policy on and sizes both pools."""
    values = yaml.safe_load(VALUES.read_text())
    cluster = yaml.safe_load(CLUSTER.read_text())
    launcher = cluster["run_launcher"]["config"]
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    chart_launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    assert values["runLauncher"]["type"] == cluster["run_launcher"]["class"] == "K8sRunLauncher"
    for where in (deployment, chart_launcher):
        assert where["volumes"] == launcher["volumes"]
        assert where["volumeMounts"] == launcher["volume_mounts"]
        assert [c["name"] for c in where["envConfigMaps"]] == launcher["env_config_maps"]
    assert chart_launcher["imagePullPolicy"] == launcher["image_pull_policy"]
    daemon = values["dagsterDaemon"]
    assert _camel_to_snake(daemon["runRetries"]) == cluster["run_retries"]
    assert _camel_to_snake(daemon["runMonitoring"]) == cluster["run_monitoring"]
    assert (daemon["runCoordinator"]["config"]["queuedRunCoordinator"]["maxConcurrentRuns"]
            == cluster["concurrency"]["runs"]["max_concurrent_runs"])
    assert values["telemetry"] == cluster["telemetry"]
    # the code location serves what the image's own CMD serves
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    module = deployment["dagsterApiGrpcArgs"][deployment["dagsterApiGrpcArgs"].index("-m") + 1]
    assert f'"-m", "{module}"' in dockerfile and f'"{deployment["port"]}"' in dockerfile
    env = {e["name"]: e["value"] for e in deployment["env"]}
    assert env["MORPHABLE_EXECUTOR"] == "k8s" and env["MORPHABLE_SENSORS"] == "on"
    from assets_defs import pools

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    limits = pools.pool_limits()
    assert limits == {pools.CPU_POOL: int(env[pools.ENV[pools.CPU_POOL]]),
                      pools.GPU_POOL: int(env[pools.ENV[pools.GPU_POOL]])}


def test_the_storage_manifest_makes_the_volume_and_settings_the_pods_mount(tmp_path, monkeypatch):
    """storage.yaml's claim is the volume every pod mounts, and its config map is a complete, valid set of settings
    overrides: every key is a MORPHABLE_<settings key>, every path lies on that volume, and no dataset path is left at
    the synthetic stand-in (a cluster that silently trained on the stand-in would be the failure)."""
    from pipelines.settings import ENV_PREFIX, PATH_KEYS, load_settings

    docs = {d["kind"]: d for d in yaml.safe_load_all(STORAGE.read_text())}
    claim = yaml.safe_load(CLUSTER.read_text())["run_launcher"]["config"]["volumes"][0]["persistentVolumeClaim"]
    assert docs["PersistentVolumeClaim"]["metadata"]["name"] == claim["claimName"]
    assert "ReadWriteMany" in docs["PersistentVolumeClaim"]["spec"]["accessModes"]
    config_map = docs["ConfigMap"]
    assert config_map["metadata"]["name"] in yaml.safe_load(CLUSTER.read_text())["run_launcher"]["config"][
        "env_config_maps"]
    data = config_map["data"]
    keys = {k[len(ENV_PREFIX):].lower() for k in data}
    assert all(k.startswith(ENV_PREFIX) for k in data) and keys <= set(PATH_KEYS), keys - set(PATH_KEYS)
    mount = yaml.safe_load(CLUSTER.read_text())["run_launcher"]["config"]["volume_mounts"][0]["mountPath"]
    assert all(v.startswith(mount + "/") for v in data.values())
    monkeypatch.chdir(tmp_path)  # no ./morphable.toml in the way
    settings = load_settings(path=None, env=dict(data))
    assert not settings.uses_synthetic_data
    assert str(settings.facescape_root) == data["MORPHABLE_FACESCAPE_ROOT"]
    assert str(settings.storage_root).startswith(data["MORPHABLE_DATA_ROOT"])
