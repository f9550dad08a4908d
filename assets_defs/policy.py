"""The policy, applied in process: what `morphable demo` runs is what the assets' automation conditions request.

One tick: sync the partitions (subject folders, experiments) and re-observe the sources whose contents changed
(exactly what the `discovery` sensor does), evaluate every automation condition against the instance
(`dagster.evaluate_automation_conditions`, the daemon's evaluator, with a cursor kept under $DAGSTER_HOME so a later
call continues where this one stopped), and execute the requested asset partitions and checks as runs in that
instance, in dependency order; a run that adds partitions or changes a source (the stand-in writing its subject
folders) ends the tick early, so the rest is decided again on what now exists. Ticks repeat until nothing is
requested. A second call with nothing changed requests
nothing and runs nothing.
"""
from __future__ import annotations

import json
import logging
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import dagster as dg

#: console log level of the in-process runs (every event stays in the instance and the UI at full detail)
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
STATE_FILE = "policy_state.json"
#: the evaluator's per-asset DEBUG lines ("Evaluating ... (n/19)") are kept off the demo's one-line-per-run output
EVALUATOR = logging.getLogger("dagster.automation_condition_tester")


@dataclass
class RunRecord:
    label: str
    run_id: str
    success: bool
    seconds: float
    materialized: list[str] = field(default_factory=list)
    checks: dict[str, bool] = field(default_factory=dict)


@dataclass
class PolicyResult:
    ticks: int
    runs: list[RunRecord]
    observations: int
    seconds: float

    @property
    def materialized(self) -> list[str]:
        return sorted({k for r in self.runs for k in r.materialized})

    @property
    def failed(self) -> list[RunRecord]:
        return [r for r in self.runs if not r.success]


def _state_path(instance: dg.DagsterInstance) -> Path:
    return Path(instance.root_directory) / STATE_FILE


def _load_state(instance: dg.DagsterInstance):
    from dagster_shared.serdes import deserialize_value

    path = _state_path(instance)
    if not path.is_file():
        return None, {}
    doc = json.loads(path.read_text())
    cursor = deserialize_value(doc["cursor"]) if doc.get("cursor") else None
    return cursor, doc.get("observed", {})


def _save_state(instance: dg.DagsterInstance, cursor, observed: dict) -> None:
    from dagster_shared.serdes import serialize_value

    from storage.atomic import atomic_write_text

    atomic_write_text(_state_path(instance), json.dumps({"cursor": serialize_value(cursor), "observed": observed}))


def _observe(defs: dg.Definitions, instance: dg.DagsterInstance, settings, observed: dict) -> int:
    """Partitions in sync with the disk and the experiments file; sources re-observed where their content changed
    (the discovery sensor's work)."""
    from assets_defs.experiments import apply_partition_requests, experiment_sync
    from assets_defs.sensors import current_versions, new_subject_requests, observe_job_name

    apply_partition_requests(instance, new_subject_requests(instance, settings)
                             + experiment_sync(instance, settings).requests)
    runs = 0
    for key, versions in current_versions(instance, settings).items():
        if versions and observed.get(key) != versions:
            job = defs.resolve_job_def(observe_job_name(dg.AssetKey(key.split("/"))))
            job.execute_in_process(instance=instance, run_config=QUIET, tags={"morphable/policy": "observation"})
            observed[key] = versions
            runs += 1
    return runs


def _requests(result) -> dict[object, set]:
    """{asset key or check key: requested partition keys (None = unpartitioned)}, through the result's public
    accessors: `get_requested_partitions` for assets; a check's result says whether it was requested (the project's
    checks are unpartitioned, and the result has no public accessor for a check's partitions)."""
    out: dict[object, set] = {}
    for r in result.results:
        if isinstance(r.key, dg.AssetCheckKey):
            if r.true_subset.is_partitioned:
                raise RuntimeError(f"check {r.key.to_user_string()} is partitioned; the in-process policy runs only "
                                   "unpartitioned checks")
            if not r.true_subset.is_empty:
                out[r.key] = {None}
        elif partitions := result.get_requested_partitions(r.key):
            out[r.key] = set(partitions)
    return out


def _plan(defs: dg.Definitions, requests: dict[object, set]) -> list[tuple[str | None, list, list]]:
    """Runs as (partition key, asset keys, check keys), assets of one partitions definition per run, in topological
    order of the asset graph."""
    graph = defs.resolve_asset_graph()
    rank = {key: i for i, level in enumerate(graph.toposorted_asset_keys_by_level) for key in level}
    groups: dict[tuple, dict] = defaultdict(lambda: {"keys": [], "rank": 10 ** 6})
    for key, partitions in requests.items():
        is_check = isinstance(key, dg.AssetCheckKey)
        asset_key = key.asset_key if is_check else key
        pdef = graph.get(asset_key).partitions_def
        # checks run after the assets of their partition, in a run of their own; unpartitioned assets of different
        # levels run apart, so partitioned runs between them keep their order
        level = rank.get(asset_key, 0)
        for pk in partitions:
            group = groups[(id(pdef), pk, is_check, level if pdef is None else -1)]
            group["keys"].append(key)
            group["rank"] = min(group["rank"], rank.get(asset_key, 0) + (0.5 if is_check else 0))
    ordered = sorted(groups.items(), key=lambda kv: (kv[1]["rank"], str(kv[0][1])))
    return [(pk, [] if is_check else g["keys"], g["keys"] if is_check else [])
            for (_, pk, is_check, _level), g in ordered]


def _label(assets: list, checks: list, pk) -> str:
    names = [k.to_user_string() for k in assets] + [f"{c.asset_key.to_user_string()}:{c.name}" for c in checks]
    shown = ", ".join(names[:3]) + (f" +{len(names) - 3}" if len(names) > 3 else "")
    return f"{shown}" + (f" [{pk}]" if pk else "")


def _check_job(defs: dg.Definitions, checks: list):
    """The job of these standalone checks (assets_defs.definitions.CHECK_JOBS)."""
    from assets_defs.definitions import CHECK_JOBS

    names = {CHECK_JOBS[c].name for c in checks}
    if len(names) != 1:
        raise RuntimeError(f"checks {checks} have no single job: add them to CHECK_JOBS")
    return defs.resolve_job_def(names.pop())


def run_policy(defs: dg.Definitions, instance: dg.DagsterInstance, settings, log: Callable[[str], None] = print,
               max_ticks: int = 40) -> PolicyResult:
    """Tick until the automation conditions request nothing more; returns every run executed."""
    t0 = time.perf_counter()
    for run_id in release_abandoned_runs(instance):
        log(f"  run {run_id} of an earlier demo that was stopped mid-run: marked failed, its pool slot freed")
    cursor, observed = _load_state(instance)
    EVALUATOR.setLevel(max(EVALUATOR.getEffectiveLevel(), logging.INFO))
    runs: list[RunRecord] = []
    observations = 0
    for tick in range(1, max_ticks + 1):
        observations += _observe(defs, instance, settings, observed)
        result = dg.evaluate_automation_conditions(defs, instance, cursor=cursor)  # its DEBUG lines: see EVALUATOR
        plan = _plan(defs, _requests(result))
        if not plan:
            _save_state(instance, result.cursor, observed)
            return PolicyResult(tick, runs, observations, time.perf_counter() - t0)
        failed_assets: set = set()
        graph = defs.resolve_asset_graph()
        for pk, assets, checks in plan:
            label = _label(assets, checks, pk)
            upstream = {p for k in assets for p in graph.get(k).parent_keys}
            if upstream & failed_assets:
                log(f"  skip {label}: an upstream run of this tick failed")
                failed_assets |= set(assets)
                continue
            runs.append(_execute(defs, instance, assets, checks, pk, label, log))
            if not runs[-1].success:
                failed_assets |= set(assets)
            # a run that adds subjects or changes a source (the stand-in writing its folders) changes what the rest
            # of this tick's plan was decided on (an asset over all subjects saw none): decide again
            changed = _observe(defs, instance, settings, observed)
            if changed:
                observations += changed
                break
        else:
            # the cursor moves on only once a tick's runs are all done: a tick cut short above, or a demo
            # interrupted mid-tick, requests the rest again
            cursor = result.cursor
            _save_state(instance, cursor, observed)
    raise RuntimeError(f"the policy still requested runs after {max_ticks} ticks; see the runs in the instance")


PID_TAG = "morphable/policy_pid"


def release_abandoned_runs(instance: dg.DagsterInstance) -> list[str]:
    """Runs of this runner still marked started whose process is gone (a demo stopped with Ctrl-C or killed): they
    would hold their `gpu_heavy` pool slot forever, and the next demo's step would wait for it without end. Marked
    failed (so the policy sees a failure, not a run in progress) and their slots freed. Runs of a live process, or
    launched by the daemon (no pid tag), are left alone."""
    released = []
    for run in instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING])):
        pid = run.tags.get(PID_TAG)
        if pid is None or _alive(int(pid)):
            continue
        instance.report_run_failed(run)
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        released.append(run.run_id)
    return released


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _execute(defs, instance, assets: list, checks: list, pk, label: str, log) -> RunRecord:
    import os

    started = time.perf_counter()
    log(f"  {time.strftime('%H:%M:%S')} run {label} ...")
    tags = {"dagster/from_automation_condition": "true", "morphable/policy": "demo", PID_TAG: str(os.getpid())}
    if assets:
        job = defs.resolve_implicit_job_def_def_for_assets(assets)
        result = job.execute_in_process(instance=instance, partition_key=pk, asset_selection=assets,
                                        run_config=QUIET, tags=tags, raise_on_error=False)
    else:
        result = _check_job(defs, checks).execute_in_process(instance=instance, partition_key=pk, run_config=QUIET,
                                                             tags=tags, raise_on_error=False)
    seconds = time.perf_counter() - started
    checks_out = {f"{c.asset_key.to_user_string()}:{c.check_name}" + (f"[{pk}]" if pk else ""): c.passed
                  for c in result.get_asset_check_evaluations()}
    materialized = [e.event_specific_data.materialization.asset_key.to_user_string()
                    for e in result.get_asset_materialization_events()]
    status = "ok" if result.success else "FAILED"
    failing = [name for name, passed in checks_out.items() if not passed]
    note = f"; check failed: {', '.join(failing)}" if failing else ""
    log(f"  {time.strftime('%H:%M:%S')} {status} {label} in {_duration(seconds)}{note}")
    if not result.success:
        for event in result.all_events:
            if event.is_step_failure:
                err = event.step_failure_data.error
                log(f"    {event.step_key}: {err.message.strip().splitlines()[-1] if err else 'failed'}")
    sys.stdout.flush()
    return RunRecord(label, result.run_id, result.success, seconds, materialized, checks_out)


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 90 else f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
