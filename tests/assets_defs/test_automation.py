"""The policy's semantics at simulated ticks (Dagster's automation evaluator on a real instance): views follow the
*data version* of their subject's track, evaluations follow their experiment's checkpoint and the weekly tick, once
per change or tick; checkpoints do not retrain on their own when a view store changes."""
import datetime as dt
import os

import dagster as dg

import pytest
from pipelines import catalog

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _report(instance, key: list[str], version: str, partition: str | None = None) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition=partition,
                                                                tags={"dagster/data_version": version}))


def _evaluate(defs, instance, selection, cursor=None):
    """One automation tick over `selection` (Dagster's own evaluator), continuing from `cursor`."""
    return dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=selection, cursor=cursor)


def test_views_follow_track_data_versions(embedded):
    from assets_defs.definitions import SUBJECT_JOBS, defs
    from assets_defs.instance import get_instance
    from assets_defs.partitions import SUBJECT_PARTITIONS
    from assets_defs.sensors import observe_job_name

    instance = get_instance()
    instance.add_dynamic_partitions(SUBJECT_PARTITIONS["thuman"].name, ["0003", "0526"])
    defs.resolve_job_def(observe_job_name(dg.AssetKey(["thuman", "raw_subject"]))).execute_in_process(
        instance=instance, run_config=QUIET)
    job = defs.resolve_job_def(SUBJECT_JOBS["thuman"].name)
    versions = {}
    for uid in ("0003", "0526"):
        res = job.execute_in_process(instance=instance, partition_key=uid, run_config=QUIET)
        assert res.success
        mats = [e.event_specific_data.materialization for e in res.get_asset_materialization_events()]
        versions[uid] = next(m.tags["dagster/data_version"] for m in mats
                             if m.asset_key == dg.AssetKey(["thuman", "smplx", "tracks"]))
    selection = dg.AssetSelection.assets(dg.AssetKey(["thuman", "smplx", "views"]))
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=selection)
    assert result.total_requested == 0  # everything up to date
    # re-tracking with an unchanged tracker: same data version -> nothing re-renders
    for uid in ("0003", "0526"):
        _report(instance, ["thuman", "smplx", "tracks"], versions[uid], uid)
    same = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=selection,
                                             cursor=result.cursor)
    # a better tracker changes one subject's parameters -> only that subject's views are requested
    _report(instance, ["thuman", "smplx", "tracks"], "a-new-parameter-hash", "0526")
    changed = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=selection,
                                                cursor=same.cursor)
    key = dg.AssetKey(["thuman", "smplx", "views"])
    assert same.get_num_requested(key) == 0
    assert changed.get_requested_partitions(key) == {"0526"}


def test_new_checkpoint_and_weekly_tick_without_duplicates(embedded):
    from assets_defs.automation import EVAL_CRON
    from assets_defs.definitions import defs
    from assets_defs.evaluation import generated_key
    from assets_defs.instance import get_instance

    assert EVAL_CRON == "0 4 * * 1"
    instance = get_instance()
    instance.add_dynamic_partitions("facescape_flame_experiments", ["exp"])
    key = generated_key(catalog.topology("facescape"))
    partition = "exp|facescape_novel_view"
    selection = dg.AssetSelection.assets(key)
    sunday = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.timezone.utc)
    _report(instance, ["facescape", "flame", "checkpoint"], "ckpt-a", "exp")
    for protocol in ("demo", "facescape_novel_expression", "facescape_novel_view"):
        _report(instance, ["evaluation", "facescape", "flame", "protocol_views"], "stores-a", protocol)
        _report(instance, key.path, "set-a", f"exp|{protocol}")

    def tick(when, cursor=None):
        return dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=selection,
                                                 evaluation_time=when, cursor=cursor)

    first = tick(sunday)
    assert first.total_requested == 0  # up to date, no tick passed
    later = tick(sunday + dt.timedelta(hours=6), first.cursor)
    assert later.total_requested == 0
    _report(instance, ["facescape", "flame", "checkpoint"], "ckpt-b", "exp")  # a new checkpoint of this experiment
    changed = tick(sunday + dt.timedelta(hours=7), later.cursor)
    assert partition in changed.get_requested_partitions(key) and changed.get_num_requested(key) == 3
    for protocol in ("demo", "facescape_novel_expression", "facescape_novel_view"):
        _report(instance, key.path, "set-b", f"exp|{protocol}")  # the requested runs happened
    settled = tick(sunday + dt.timedelta(hours=8), changed.cursor)
    assert settled.total_requested == 0
    monday = dt.datetime(2026, 11, 23, 4, 5, tzinfo=dt.timezone.utc)  # just after the weekly tick
    weekly = tick(monday, settled.cursor)
    assert weekly.get_num_requested(key) == 3
    again = tick(monday + dt.timedelta(minutes=30), weekly.cursor)
    assert again.total_requested == 0  # one run per tick, not one per evaluation


def test_a_held_out_store_re_evaluates_exactly_the_protocols_that_read_it(embedded):
    """A view store changes: every protocol's `protocol_views` partition is asked again (they read all stores), but
    only the protocols whose recorded stores changed get a new data version, and only their evaluation sets (every
    experiment's) are requested; a re-run that reproduces a partition's data version requests nothing."""
    from assets_defs.definitions import defs
    from assets_defs.evaluation import generated_key, protocol_views_key
    from assets_defs.instance import get_instance

    instance = get_instance()
    instance.add_dynamic_partitions("facescape_subjects", ["1", "122"])
    instance.add_dynamic_partitions("facescape_flame_experiments", ["a", "b"])
    protocols = ("demo", "facescape_novel_expression", "facescape_novel_view")
    for subject in ("1", "122"):
        _report(instance, ["facescape", "flame", "views"], f"v-{subject}", subject)
    for protocol in protocols:
        _report(instance, protocol_views_key(catalog.topology("facescape")).path, f"stores-{protocol}", protocol)
    for experiment in ("a", "b"):
        _report(instance, ["facescape", "flame", "checkpoint"], f"ckpt-{experiment}", experiment)
        for protocol in protocols:
            _report(instance, generated_key(catalog.topology("facescape")).path, "set", f"{experiment}|{protocol}")
    selection = dg.AssetSelection.assets(protocol_views_key(catalog.topology("facescape")), generated_key(catalog.topology("facescape")))
    wednesday = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.timezone.utc)  # (no weekly tick in between)

    def tick(cursor, minutes):
        return dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=selection,
                                                 evaluation_time=wednesday + dt.timedelta(minutes=minutes),
                                                 cursor=cursor)

    first = tick(None, 0)
    assert first.total_requested == 0
    _report(instance, ["facescape", "flame", "views"], "v-122-retracked", "122")  # a held-out subject re-tracked
    changed = tick(first.cursor, 1)
    assert changed.get_requested_partitions(protocol_views_key(catalog.topology("facescape"))) == set(protocols)
    assert changed.get_num_requested(generated_key(catalog.topology("facescape"))) == 0  # its protocol_views are in the same run
    # the protocols that read 122 record new stores; the demo protocol (training identities) the same as before
    for protocol in protocols:
        _report(instance, protocol_views_key(catalog.topology("facescape")).path,
                f"stores-{protocol}" + ("" if protocol == "demo" else "-new"), protocol)
    evaluated = tick(changed.cursor, 2)
    assert evaluated.get_requested_partitions(generated_key(catalog.topology("facescape"))) == {
        f"{e}|{p}" for e in ("a", "b") for p in ("facescape_novel_expression", "facescape_novel_view")}
    assert evaluated.get_num_requested(protocol_views_key(catalog.topology("facescape"))) == 0
    for partition in evaluated.get_requested_partitions(generated_key(catalog.topology("facescape"))):
        _report(instance, generated_key(catalog.topology("facescape")).path, "set-new", partition)
    assert tick(evaluated.cursor, 3).total_requested == 0


def test_a_changed_view_store_does_not_retrain(embedded):
    from assets_defs.definitions import defs
    from assets_defs.instance import get_instance

    instance = get_instance()
    instance.add_dynamic_partitions("thuman_subjects", ["0003"])
    instance.add_dynamic_partitions("thuman_smplx_experiments", ["exp"])
    _report(instance, ["thuman", "smplx", "views"], "views-a", "0003")
    _report(instance, ["model", "first_stage"], "fs-a")
    instance.report_runless_asset_event(dg.AssetObservation(asset_key=["thuman", "smplx", "experiment"], partition="exp",
                                                            tags={"dagster/data_version": "def-a"}))
    _report(instance, ["thuman", "smplx", "checkpoint"], "ckpt-a", "exp")
    selection = dg.AssetSelection.assets(dg.AssetKey(["thuman", "smplx", "checkpoint"]))
    first = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=selection)
    _report(instance, ["thuman", "smplx", "views"], "views-b", "0003")  # a subject re-rendered with new content
    views_changed = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=selection,
                                                      cursor=first.cursor)
    # no retraining; only the staleness check (selected with its asset) runs, to name the changed subjects
    assert views_changed.get_requested_partitions(dg.AssetKey(["thuman", "smplx", "checkpoint"])) == set()
    assert views_changed.total_requested == 1
    again = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=selection,
                                              cursor=views_changed.cursor)
    assert again.total_requested == 0  # once per change: the check's cursor is kept (it is not partitioned)
    instance.report_runless_asset_event(dg.AssetObservation(asset_key=["thuman", "smplx", "experiment"], partition="exp",
                                                            tags={"dagster/data_version": "def-b"}))
    edited = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=selection,
                                               cursor=again.cursor)
    assert edited.get_requested_partitions(dg.AssetKey(["thuman", "smplx", "checkpoint"])) == {"exp"}


def test_runs_of_a_stopped_demo_are_released():
    """A demo killed mid-run leaves its run "started", holding its `gpu_heavy` pool slot: the next demo would wait
    for the slot forever. The runner marks such runs failed and frees their slots; a live process's runs stay."""
    import os
    import subprocess
    import sys

    from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus

    from assets_defs.policy import PID_TAG, release_abandoned_runs

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    instance = dg.DagsterInstance.ephemeral()
    for run_id, pid in (("a" * 8, dead), ("b" * 8, str(os.getpid())), ("c" * 8, None)):
        instance.add_run(DagsterRun(job_name="__ASSET_JOB", run_id=run_id, status=DagsterRunStatus.STARTED,
                                    tags={PID_TAG: pid} if pid else {}))
    assert release_abandoned_runs(instance) == ["a" * 8]
    status = {r.run_id: r.status for r in instance.get_runs()}
    assert status == {"a" * 8: DagsterRunStatus.FAILURE, "b" * 8: DagsterRunStatus.STARTED,
                      "c" * 8: DagsterRunStatus.STARTED}


def test_the_first_stage_waits_for_every_view_store_it_reads(embedded):
    """On a fresh instance no subject is a partition yet, so "every view store" is an empty set: the first stage
    must not be requested before the subjects exist and their views are rendered (under the daemon it used to be,
    and failed on missing views)."""
    from assets_defs.definitions import defs
    from assets_defs.instance import get_instance
    from assets_defs.partitions import SUBJECT_PARTITIONS

    instance = get_instance()
    first_stage = dg.AssetKey(["model", "first_stage"])
    selection = dg.AssetSelection.assets(first_stage)

    def requested(cursor=None):
        result = _evaluate(defs, instance, selection, cursor)
        return result.get_num_requested(first_stage), result.cursor

    n, cursor = requested()
    assert n == 0  # no subjects, so no views
    subjects = {"facescape": ["1", "2"], "thuman": ["0003", "0526"]}
    for dataset, names in subjects.items():
        instance.add_dynamic_partitions(SUBJECT_PARTITIONS[dataset].name, names)
    n, cursor = requested(cursor)
    assert n == 0  # subjects discovered, views not rendered
    for name in subjects["facescape"]:
        _report(instance, ["facescape", "flame", "views"], f"v-{name}", name)
    n, cursor = requested(cursor)
    assert n == 0  # FaceScape's views rendered, THuman's not
    for name in subjects["thuman"]:
        _report(instance, ["thuman", "smplx", "views"], f"v-{name}", name)
    n, cursor = requested(cursor)
    assert n == 1


def test_pools_are_sized_for_the_machine_and_the_stages_sit_in_them(embedded, monkeypatch):
    from assets_defs.definitions import defs
    from assets_defs.instance import get_instance
    from assets_defs.pools import CPU_POOL, GPU_POOL, apply_pool_limits

    monkeypatch.delenv("MORPHABLE_CPU_SLOTS", raising=False)
    monkeypatch.delenv("MORPHABLE_GPU_SLOTS", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # a CPU machine: one GPU-pool slot (the CPU fallback)
    instance = get_instance()
    storage = instance.event_log_storage
    assert storage.get_concurrency_info(CPU_POOL).slot_count == len(os.sched_getaffinity(0))
    assert storage.get_concurrency_info(GPU_POOL).slot_count == 1
    monkeypatch.setenv("MORPHABLE_CPU_SLOTS", "16")  # a cluster: 16 CPU pods at once, 4 GPUs
    monkeypatch.setenv("MORPHABLE_GPU_SLOTS", "4")
    assert apply_pool_limits(instance) == {CPU_POOL: 16, GPU_POOL: 4}
    assert apply_pool_limits(instance) == {}  # applied once
    assert storage.get_concurrency_info(GPU_POOL).slot_count == 4
    graph = defs.resolve_asset_graph()
    pools = {key.to_user_string(): set(graph.get(key).pools) for key in graph.materializable_asset_keys}
    for name in ("facescape/flame/tracks", "thuman/smplx/tracks", "facescape/flame/views", "thuman/smplx/views",
                 "evaluation/facescape/flame/metrics"):
        assert pools[name] == {CPU_POOL}, name
    for name in ("model/first_stage", "facescape/flame/checkpoint", "thuman/smplx/checkpoint", "evaluation/facescape/flame/generated"):
        assert pools[name] == {GPU_POOL}, name
    monkeypatch.setenv("MORPHABLE_GPU_SLOTS", "none")
    with pytest.raises(ValueError, match="MORPHABLE_GPU_SLOTS"):
        apply_pool_limits(instance)


def test_a_published_model_needs_neither_the_first_stage_nor_the_view_stores(embedded, monkeypatch):
    """Issue 23, item 5: on a fresh instance (no first stage, no view store) a published paper-preset model is
    imported at once, a tiny trained experiment waits; a new first stage retrains the experiment that uses it and
    re-imports nothing; a paper-preset training does not use the tiny first stage either."""
    from assets_defs.definitions import defs
    from assets_defs.instance import get_instance

    experiments = embedded / "experiments.toml"
    released = embedded / "released.ckpt"
    released.write_bytes(b"a released file (never read: the test only evaluates the policy)")
    experiments.write_text(f'''
[experiments.released]
kind = "published"
dataset = "facescape"
file = "{released}"

[experiments.tiny-trained]
kind = "trained"
dataset = "facescape"
training = {{ preset = "tiny", steps = 2 }}

[experiments.paper-trained]
kind = "trained"
dataset = "facescape"
training = {{ preset = "paper", steps = 2 }}
''')
    monkeypatch.setenv("MORPHABLE_EXPERIMENTS_FILE", str(experiments))
    instance = get_instance()
    instance.add_dynamic_partitions("facescape_subjects", ["1", "2"])
    instance.add_dynamic_partitions("facescape_flame_experiments", ["released", "tiny-trained", "paper-trained"])
    for name in ("released", "tiny-trained", "paper-trained"):
        instance.report_runless_asset_event(dg.AssetObservation(asset_key=["facescape", "flame", "experiment"], partition=name,
                                                                tags={"dagster/data_version": f"def-{name}"}))
    key = dg.AssetKey(["facescape", "flame", "checkpoint"])
    selection = dg.AssetSelection.assets(key)

    def tick(cursor=None):
        result = _evaluate(defs, instance, selection, cursor)
        return result.get_requested_partitions(key), result.cursor

    requested, cursor = tick()
    assert requested == {"released"}  # no first stage, no views: only the import can run
    _report(instance, ["facescape", "flame", "checkpoint"], "ckpt-released", "released")
    for subject in ("1", "2"):
        _report(instance, ["facescape", "flame", "views"], f"v-{subject}", subject)
    requested, cursor = tick(cursor)
    assert requested == {"paper-trained"}  # views exist; the tiny training still waits for the first stage
    _report(instance, ["facescape", "flame", "checkpoint"], "ckpt-paper", "paper-trained")
    _report(instance, ["model", "first_stage"], "fs-a")
    requested, cursor = tick(cursor)
    assert requested == {"tiny-trained"}
    _report(instance, ["facescape", "flame", "checkpoint"], "ckpt-tiny", "tiny-trained")
    requested, cursor = tick(cursor)
    assert requested == set()
    _report(instance, ["model", "first_stage"], "fs-b")  # a new first stage
    requested, cursor = tick(cursor)
    assert requested == {"tiny-trained"}  # only the experiment that trains on it
