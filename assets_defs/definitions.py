"""The code location: `dagster dev -m assets_defs.definitions` (or `morphable ui`).

What runs is decided by the assets' automation conditions (assets_defs/automation.py): the `automation` sensor
applies them under the daemon, `morphable demo` applies the same ones in process. The jobs below are named for what
they select, for launching by hand from the UI.
"""
import os

import dagster as dg

from assets_defs import raw
from assets_defs.animation import ANIMATION_ASSETS
from assets_defs.evaluation import EVAL_SET_ASSETS, METRIC_ASSETS, PROTOCOL_VIEW_ASSETS, comparison
from assets_defs.experiments import EXPERIMENT_SOURCES
from assets_defs.lineage import LineageIOManager
from assets_defs.partitions import DATASETS, LINES
from assets_defs.resources import SettingsResource
from assets_defs.sensors import OBSERVE_JOBS, SENSORS_ON, discovery
from assets_defs.tracking import TRACK_ASSETS
from assets_defs.training import CHECKPOINT_ASSETS, TRAINING_CHECKS, first_stage
from assets_defs.views import VIEW_ASSETS

RAW_ASSETS = [raw.synthetic_standin, raw.body_models]
SOURCES = [*raw.RAW_SUBJECTS.values(), *EXPERIMENT_SOURCES.values()]
#: per dataset: its inventory and every line's tracks and views
SUBJECT_ASSETS = {d: [raw.INVENTORY_ASSETS[d], *(a for line, t in LINES.items() if t.dataset == d
                                                  for a in (TRACK_ASSETS[line], VIEW_ASSETS[line]))]
                  for d in DATASETS}
#: per line
EVALUATION_ASSETS = {line: [EVAL_SET_ASSETS[line], METRIC_ASSETS[line]] for line in LINES}
ALL_ASSETS = RAW_ASSETS + [a for v in SUBJECT_ASSETS.values() for a in v] + [first_stage] + \
    list(CHECKPOINT_ASSETS.values()) + list(PROTOCOL_VIEW_ASSETS.values()) + \
    [a for v in EVALUATION_ASSETS.values() for a in v] + list(ANIMATION_ASSETS.values()) + [comparison]

raw_assets_job = dg.define_asset_job("raw_assets", selection=dg.AssetSelection.assets(*RAW_ASSETS),
                                     description="The synthetic stand-in (when the settings use it) and the body-model "
                                                 "files.")
#: per dataset, partitioned by subject
SUBJECT_JOBS = {d: dg.define_asset_job(f"track_and_render_{d}", selection=dg.AssetSelection.assets(*assets),
                                       description=f"Validate, track and render the training views of {d} "
                                                   "subjects.")
                for d, assets in SUBJECT_ASSETS.items()}
first_stage_job = dg.define_asset_job("train_first_stage", selection=dg.AssetSelection.assets(first_stage),
                                      description="The tiny preset's autoencoder ([first_stage] of the experiments "
                                                  "file).")
#: per line, partitioned by experiment
CHECKPOINT_JOBS = {line: dg.define_asset_job(f"checkpoints_{line}", selection=dg.AssetSelection.assets(asset),
                                             description=f"Train, import or set up the {line} experiments' models.")
                   for line, asset in CHECKPOINT_ASSETS.items()}
#: per line, partitioned by experiment x protocol
EVALUATION_JOBS = {line: dg.define_asset_job(f"evaluate_{line}", selection=dg.AssetSelection.assets(*assets),
                                             description=f"Generate and score the {line} evaluation sets.")
                   for line, assets in EVALUATION_ASSETS.items()}
#: the standalone checks (per line, partitioned by experiment): re-evaluated when view stores change
CHECK_JOBS = {next(iter(check.check_keys)): dg.define_asset_job(
    f"check_training_inputs_{line}", selection=dg.AssetSelection.checks(check),
    description=f"Whether the {line} view stores changed since each experiment's checkpoint was trained.")
    for line, check in TRAINING_CHECKS.items()}
#: per line, partitioned by protocol: which view stores each protocol reads
PROTOCOL_VIEWS_JOBS = {line: dg.define_asset_job(f"protocol_views_{line}", selection=dg.AssetSelection.assets(asset),
                                                 description=f"Record which {line} view stores each protocol reads.")
                       for line, asset in PROTOCOL_VIEW_ASSETS.items()}
#: per face line, partitioned by experiment x sequence
ANIMATION_JOBS = {line: dg.define_asset_job(f"animate_{line}", selection=dg.AssetSelection.assets(asset),
                                            description=f"Animate the {line} experiments' models through the declared "
                                                        "driving sequences (pipelines/animations.py).")
                  for line, asset in ANIMATION_ASSETS.items()}
comparison_job = dg.define_asset_job("compare_experiments", selection=dg.AssetSelection.assets(comparison),
                                     description="The comparison table across experiments.")

#: the one policy, under the daemon: every asset's automation condition (on when MORPHABLE_SENSORS=on)
automation = dg.AutomationConditionSensorDefinition(
    "automation", target=dg.AssetSelection.all() | dg.AssetSelection.all_asset_checks(), default_status=SENSORS_ON,
    use_user_code_server=True,  # the conditions include our own (DepsHavePartitions), evaluated in the code server
    description="Evaluates every asset's automation condition (assets_defs/automation.py): what `morphable demo` "
                "applies in process.")


def _executor():
    """Multiprocess locally; one Kubernetes pod per step on a cluster (MORPHABLE_EXECUTOR=k8s, deploy/cluster)."""
    if os.environ.get("MORPHABLE_EXECUTOR") == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    return None  # Dagster's default (multiprocess, or in-process for execute_in_process)


defs = dg.Definitions(
    assets=ALL_ASSETS + SOURCES,
    asset_checks=list(TRAINING_CHECKS.values()),
    jobs=[raw_assets_job, *OBSERVE_JOBS.values(), *SUBJECT_JOBS.values(), first_stage_job, *CHECKPOINT_JOBS.values(),
          *PROTOCOL_VIEWS_JOBS.values(), *EVALUATION_JOBS.values(), *CHECK_JOBS.values(), *ANIMATION_JOBS.values(),
          comparison_job],
    sensors=[discovery, automation],
    resources={"settings": SettingsResource(), "lineage": LineageIOManager(settings=SettingsResource())},
    executor=_executor(),
)
