"""The main job: every asset of the graph on the embedded default, in the embedded Dagster instance."""
import os
import time
import warnings
from dataclasses import dataclass

import dagster as dg

from assets_defs import raw
from assets_defs.definitions import OBSERVE_JOBS, SUBJECT_JOBS, defs
from assets_defs.instance import get_instance
from assets_defs.partitions import SUBJECT_PARTITIONS
from assets_defs.resources import SettingsResource
from assets_defs.sensors import new_subject_requests


#: console log level for the in-process runs (events stay in the instance and the UI at full detail)
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass
class DemoResult:
    seconds: float
    materialized: list[str]
    subject_partitions: dict[str, int]
    checks: dict[str, bool]
    run_ids: list[str]


def run_demo(settings_file: str = "", log=print) -> DemoResult:
    """Stand-in data first, then subject discovery and source observation, then the whole main job."""
    if settings_file:
        os.environ["MORPHABLE_SETTINGS"] = os.path.abspath(settings_file)
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    t0 = time.perf_counter()
    instance = get_instance()
    log(f"Dagster instance: {instance.root_directory}")
    main = defs.resolve_job_def("main_job")
    first = main.execute_in_process(instance=instance, asset_selection=[raw.synthetic_standin.key],
                                    run_config=QUIET)
    settings = SettingsResource().load()
    for req in new_subject_requests(instance, settings):
        instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
    observed = [defs.resolve_job_def(job.name).execute_in_process(instance=instance, run_config=QUIET)
                for job in OBSERVE_JOBS.values()]
    result = main.execute_in_process(instance=instance, run_config=QUIET)
    results = [result]
    for dataset, job in SUBJECT_JOBS.items():
        for key in instance.get_dynamic_partitions(SUBJECT_PARTITIONS[dataset].name):
            log(f"tracking and rendering {dataset} subject {key}")
            results.append(defs.resolve_job_def(job.name).execute_in_process(
                instance=instance, partition_key=key, run_config=QUIET))
    checks: dict[str, bool] = {}
    materialized: set[str] = set()
    for r in results:
        for c in r.get_asset_check_evaluations():
            name = f"{c.asset_key.to_user_string()}:{c.check_name}"
            checks[name] = checks.get(name, True) and c.passed
        materialized |= {e.event_specific_data.materialization.asset_key.to_user_string()
                         for e in r.get_asset_materialization_events()}
    partitions = {d: len(instance.get_dynamic_partitions(p.name)) for d, p in SUBJECT_PARTITIONS.items()}
    return DemoResult(time.perf_counter() - t0, sorted(materialized), partitions, checks,
                      [first.run_id, *(o.run_id for o in observed), *(r.run_id for r in results)])
