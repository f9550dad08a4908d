"""The main job: every asset of the graph on the embedded default, in the embedded Dagster instance."""
import os
import time
import warnings
from dataclasses import dataclass

import dagster as dg

from assets_defs import raw
from assets_defs.definitions import OBSERVE_JOBS, SUBJECT_JOBS, defs, model_job
from assets_defs.instance import get_instance
from assets_defs.partitions import SUBJECT_PARTITIONS
from assets_defs.resources import SettingsResource
from assets_defs.sensors import new_subject_requests


#: console log level for the in-process runs (events stay in the instance and the UI at full detail)
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
#: The tiny preset's demo budget (a 2-core laptop, the whole graph in about 10 minutes). Training: 4 supervised
#: views per sample (more signal per spatial volume than the released 1). Sampling: DDIM 20 steps and no
#: classifier-free guidance (a model trained for minutes over-saturates under the released CFG 2.0). Everything
#: else is the assets' default; the UI's launchpad shows the same fields.
DEMO_FIRST_STAGE_STEPS = 450
DEMO_TRAINING = {"facescape": {"steps": 230, "batch_size": 4, "loss_views": 4},
                 "thuman": {"steps": 25, "batch_size": 4, "loss_views": 4}}
DEMO_SAMPLER = {"steps": 20, "cfg_scale": 1.0}


#: A smoke budget (tests): every step of the same path, seconds instead of minutes, no quality expected.
SMOKE = {"first_stage_steps": 3, "training": {d: {"steps": 2, "batch_size": 2, "loss_views": 2} for d in DEMO_TRAINING},
         "sampler": {"steps": 2, "cfg_scale": 1.0}, "preview_steps": 0}


def demo_model_run_config(smoke: bool = False) -> dict:
    from pipelines.protocols import PROTOCOLS

    fs_steps = SMOKE["first_stage_steps"] if smoke else DEMO_FIRST_STAGE_STEPS
    training = SMOKE["training"] if smoke else DEMO_TRAINING
    preview = SMOKE["preview_steps"] if smoke else 10
    ops: dict = {"model__first_stage": {"config": {"steps": fs_steps}}}
    ops.update({f"{d}__checkpoint": {"config": {**cfg, "ckpt_every": cfg["steps"], "preview_steps": preview}}
                for d, cfg in training.items()})
    ops.update({f"evaluation__{p}__generated": {"config": SMOKE["sampler"] if smoke else DEMO_SAMPLER}
                for p in PROTOCOLS})
    return {**QUIET, "ops": ops}


@dataclass
class DemoResult:
    seconds: float
    materialized: list[str]
    subject_partitions: dict[str, int]
    checks: dict[str, bool]
    run_ids: list[str]
    demo_table: object = None  # pandas DataFrame: the demo protocol's model and baseline rows
    pictures: dict[str, str] | None = None


def run_demo(settings_file: str = "", log=print, smoke: bool = False) -> DemoResult:
    """Stand-in data first, then subject discovery and source observation, then the whole main job."""
    if settings_file:
        os.environ["MORPHABLE_SETTINGS"] = os.path.abspath(settings_file)
    for category in (dg.BetaWarning, dg.PreviewWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category)
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
    log("training the first stage and both checkpoints, then generating and scoring every protocol")
    results.append(defs.resolve_job_def(model_job.name).execute_in_process(instance=instance,
                                                                           run_config=demo_model_run_config(smoke)))
    checks: dict[str, bool] = {}
    materialized: set[str] = set()
    for r in results:
        for c in r.get_asset_check_evaluations():
            name = f"{c.asset_key.to_user_string()}:{c.check_name}"
            checks[name] = checks.get(name, True) and c.passed
        materialized |= {e.event_specific_data.materialization.asset_key.to_user_string()
                         for e in r.get_asset_materialization_events()}
    partitions = {d: len(instance.get_dynamic_partitions(p.name)) for d, p in SUBJECT_PARTITIONS.items()}
    table, pictures = _demo_outputs(instance, settings)
    return DemoResult(time.perf_counter() - t0, sorted(materialized), partitions, checks,
                      [first.run_id, *(o.run_id for o in observed), *(r.run_id for r in results)], table, pictures)


def _uri(instance, key: list[str]) -> str | None:
    event = instance.get_latest_materialization_event(dg.AssetKey(key))
    value = event.asset_materialization.metadata.get("dagster/uri") if event else None
    return None if value is None else str(value.value)


def _demo_outputs(instance, settings):
    """The demo protocol's rows (model + baselines) and where the pictures are."""
    import pandas as pd

    from storage.metric_tables import read_tables

    folder = _uri(instance, ["evaluation", "demo", "metrics"])
    rows = []
    if folder:
        root = settings.storage_root / "metrics" / "demo"
        model_set = _uri(instance, ["evaluation", "demo", "generated"])
        base = instance.get_latest_materialization_event(dg.AssetKey(["evaluation", "demo", "baselines"]))
        meta = base.asset_materialization.metadata if base else {}
        for path in [model_set] + [str(meta[k].value) for k in ("copy_input_path", "mean_train_path") if k in meta]:
            if path:
                rows.append(read_tables(root / os.path.basename(path))["per_protocol"])
    table = pd.concat(rows, ignore_index=True) if rows else None
    pictures = {}
    for d in ("facescape", "thuman"):
        run = settings.storage_root / "runs" / f"tiny-{d}" / "reports"
        if run.is_dir():
            pictures[f"{d} training (loss curve, preview)"] = str(run)
    if folder:
        pictures["demo metric tables and PSNR plot"] = folder
    pictures["metric history plot"] = str(settings.storage_root / "metrics" / "psnr_history.png")
    pictures["every asset's thumbnails"] = "make ui  ->  http://127.0.0.1:3000"
    return table, pictures
