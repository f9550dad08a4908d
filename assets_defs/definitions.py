"""The code location: `dagster dev -m assets_defs.definitions` (or `morphable ui`)."""
import os

import dagster as dg

from assets_defs import raw
from assets_defs.tracking import TRACK_ASSETS
from assets_defs.views import VIEW_ASSETS
from assets_defs.training import CHECKPOINT_ASSETS, TRAINING_CHECKS, first_stage
from assets_defs.evaluation import EVAL_SET_ASSETS, METRIC_ASSETS, demo_baselines, evaluation_summary
from assets_defs.resources import SettingsResource
from assets_defs.sensors import raw_subject_discovery

MATERIALIZABLE = [raw.synthetic_standin, raw.body_models, raw.facescape_raw_inventory, raw.thuman_raw_inventory]
SOURCES = [raw.facescape_raw_subject, raw.thuman_raw_subject]

#: The main job: every materializable asset of the graph (the README's demo command runs it).
main_job = dg.define_asset_job("main_job", selection=dg.AssetSelection.assets(*MATERIALIZABLE),
                               description="Every asset of the graph on the configured data (embedded default: "
                                           "the synthetic stand-in).")
#: Per subject: tracked meshes then training views, one job per dataset (partitioned by subject).
SUBJECT_JOBS = {d: dg.define_asset_job(f"subjects_{d}", selection=dg.AssetSelection.assets(*assets, VIEW_ASSETS[d]),
                                       description=f"Track and render the views of {d} subject partitions.")
                for d, assets in TRACK_ASSETS.items()}

#: Model and evaluation: first stage, checkpoints, evaluation sets, baselines, metrics, summary (unpartitioned).
MODEL_ASSETS = [first_stage, *CHECKPOINT_ASSETS.values()]
EVALUATION_ASSETS = [*EVAL_SET_ASSETS.values(), demo_baselines, *METRIC_ASSETS.values(), evaluation_summary]
model_job = dg.define_asset_job("model_job", selection=dg.AssetSelection.assets(*MODEL_ASSETS, *EVALUATION_ASSETS),
                                description="Train the first stage and both checkpoints, then generate and score "
                                            "every evaluation protocol (GPU steps in their own processes).")
evaluation_job = dg.define_asset_job("evaluation_job", selection=dg.AssetSelection.assets(*EVALUATION_ASSETS),
                                     description="Regenerate every evaluation set with the current checkpoints and "
                                                 "recompute the metric tables and the summary.")

#: Declarative automation for the views (re-render when a track's data version changes); on when MORPHABLE_SENSORS=on.
views_automation = dg.AutomationConditionSensorDefinition(
    "views_automation", target=dg.AssetSelection.assets(*VIEW_ASSETS.values()),
    default_status=dg.DefaultSensorStatus.RUNNING if os.environ.get("MORPHABLE_SENSORS") == "on"
    else dg.DefaultSensorStatus.STOPPED)

#: New checkpoint -> evaluation sets -> metrics -> summary, and the weekly regeneration (MORPHABLE_EVAL_CRON).
evaluation_automation = dg.AutomationConditionSensorDefinition(
    "evaluation_automation", target=dg.AssetSelection.assets(*EVALUATION_ASSETS),
    default_status=dg.DefaultSensorStatus.RUNNING if os.environ.get("MORPHABLE_SENSORS") == "on"
    else dg.DefaultSensorStatus.STOPPED)

#: One observation job per dataset (their partition sets differ): records each raw subject's data version.
OBSERVE_JOBS = {
    src.key.path[0]: dg.define_asset_job(f"observe_{src.key.path[0]}_subjects",
                                         selection=dg.AssetSelection.assets(src.key),
                                         description=f"Record the data version (file-list hash) of every "
                                                     f"{src.key.path[0]} subject.")
    for src in SOURCES
}

def _executor():
    """Multiprocess locally; one Kubernetes pod per step on a cluster (MORPHABLE_EXECUTOR=k8s, deploy/cluster)."""
    if os.environ.get("MORPHABLE_EXECUTOR") == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    return None  # Dagster's default (multiprocess, or in-process for execute_in_process)


defs = dg.Definitions(
    assets=MATERIALIZABLE + SOURCES + [a for assets in TRACK_ASSETS.values() for a in assets]
    + list(VIEW_ASSETS.values()) + MODEL_ASSETS + EVALUATION_ASSETS,
    asset_checks=TRAINING_CHECKS,
    jobs=[main_job, *OBSERVE_JOBS.values(), *SUBJECT_JOBS.values(), model_job, evaluation_job],
    sensors=[raw_subject_discovery, views_automation, evaluation_automation],
    resources={"settings": SettingsResource()},
    executor=_executor(),
)
