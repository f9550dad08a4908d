"""Discovery: subject folders and experiments become dynamic partitions, and a source is re-observed when what it
describes changed (a raw subject's files' contents, an experiment's definition), so that the automation conditions see
new subjects, changed raw files and edited experiments. Each tick also sizes the pools (assets_defs/pools.py), so a
daemon anywhere runs with the right limits."""

import json
import os

import dagster as dg

from assets_defs.experiments import apply_partition_requests, experiment_sync, experiment_version
from assets_defs.partitions import EXPERIMENT_PARTITIONS, LINES, SUBJECT_PARTITIONS, line_key
from assets_defs.pools import apply_pool_limits
from assets_defs.resources import SettingsResource
from storage.hashing import hash_json

SENSORS_ON = dg.DefaultSensorStatus.RUNNING if os.environ.get("MORPHABLE_SENSORS") == "on" \
    else dg.DefaultSensorStatus.STOPPED


def observe_job_name(source_key: dg.AssetKey) -> str:
    return "observe_" + "_".join(source_key.path)


#: one observation job per source (their partition sets differ, so they cannot share a job)
SOURCE_KEYS = [dg.AssetKey([d, "raw_subject"]) for d in SUBJECT_PARTITIONS] + \
    [line_key(t, "experiment") for t in LINES.values()]
OBSERVE_JOBS = {key: dg.define_asset_job(observe_job_name(key), selection=dg.AssetSelection.assets(key),
                                         description=f"Record the data version of every {' '.join(key.path[:-1])} "
                                                     f"{key.path[-1].replace('_', ' ')} partition.")
                for key in SOURCE_KEYS}


def new_subject_requests(instance: dg.DagsterInstance, settings) -> list[dg.AddDynamicPartitionsRequest]:
    """One add-request per dataset holding the subjects on disk that are not yet partitions."""
    from pipelines.ingest import discover_subjects
    from storage.errors import DataError

    requests = []
    for dataset, pdef in SUBJECT_PARTITIONS.items():
        try:
            on_disk = discover_subjects(settings, dataset)
        except DataError:
            continue  # dataset root not there (yet); nothing to add
        known = set(instance.get_dynamic_partitions(pdef.name))
        new = [s for s in on_disk if s not in known]
        if new:
            requests.append(pdef.build_add_request(new))
    return requests


def current_versions(instance: dg.DagsterInstance, settings) -> dict[str, dict[str, str]]:
    """What each source's observation would record now: {source key: {partition: data version}}."""
    from pipelines.experiments import load_experiments
    from pipelines.ingest import subject_data_versions

    out: dict[str, dict[str, str]] = {}
    for dataset, pdef in SUBJECT_PARTITIONS.items():
        out[f"{dataset}/raw_subject"] = subject_data_versions(settings, dataset,
                                                              instance.get_dynamic_partitions(pdef.name))
    experiments = load_experiments(settings.experiments_file).experiments
    for line, pdef in EXPERIMENT_PARTITIONS.items():
        out[line_key(LINES[line], "experiment").to_user_string()] = {
            k: experiment_version(settings, experiments[k]) for k in instance.get_dynamic_partitions(pdef.name)
            if k in experiments}
    return out


@dg.sensor(name="discovery", minimum_interval_seconds=60, default_status=SENSORS_ON, jobs=list(OBSERVE_JOBS.values()),
           description="Sizes the pools (cpu: cores, gpu_heavy: GPUs), adds new FaceScape / THuman subject folders and new experiments as partitions (removed "
                       "experiments lose theirs; their data is kept and reported), and re-observes a source when "
                       "its subjects' files or its experiments' definitions changed.")
def discovery(context: dg.SensorEvaluationContext, settings: SettingsResource) -> dg.SensorResult:
    s = settings.load()
    sync = experiment_sync(context.instance, s)
    for dataset, names in sync.removed.items():
        context.log.warning(f"{dataset} experiments removed from the experiments file: {names}; their partitions "
                            "are dropped, their checkpoints, evaluation sets and metric rows are kept")
    for pool, slots in apply_pool_limits(context.instance).items():
        context.log.info(f"pool {pool}: {slots} slots (assets_defs/pools.py)")
    requests = new_subject_requests(context.instance, s) + sync.requests
    apply_partition_requests(context.instance, requests)  # applied now, so the observations below include them
    seen = json.loads(context.cursor) if context.cursor else {}
    now = current_versions(context.instance, s)
    runs = [dg.RunRequest(job_name=observe_job_name(dg.AssetKey(key.split("/"))),
                          run_key=f"{key}:{hash_json(v, 12, spaced=True)}")
            for key, v in now.items() if v and seen.get(key) != v]  # (a line without experiments: nothing)
    context.update_cursor(json.dumps(now))
    if not runs and not requests:
        return dg.SensorResult(skip_reason=dg.SkipReason("nothing new or changed"))
    return dg.SensorResult(run_requests=runs)
