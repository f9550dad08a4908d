"""The one policy: the automation conditions every asset declares. The daemon (`make ui`, a cluster) and
`morphable demo` (assets_defs/policy.py) evaluate exactly these; nothing else decides what runs.

An asset partition is requested when it is missing, when its code version changed, or when the *data version* of a
dependency changed (a re-run that reproduces the same data changes nothing downstream), and only once its
dependencies exist and none of them is in progress. A partition whose last run failed is not retried until
something changes. Evaluation sets and metrics also regenerate at a weekly cron tick.
"""
from __future__ import annotations

import os

import dagster as dg

A = dg.AutomationCondition

class DepsHavePartitions(dg.AutomationCondition):
    """True once every dynamically partitioned dependency has partitions. An asset that reads all partitions of a
    dependency (the first stage reads every subject's views) sees an empty partition set as "nothing missing";
    on a fresh instance, before the discovery sensor has added the subjects, it would be requested at once and fail
    on views that do not exist yet."""

    @property
    def name(self) -> str:
        return "deps_have_partitions"

    def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        graph, instance = context.asset_graph, context.asset_graph_view.instance
        for key in graph.get(context.key).parent_keys:
            pdef = graph.get(key).partitions_def
            if isinstance(pdef, dg.DynamicPartitionsDefinition) and not instance.get_dynamic_partitions(pdef.name):
                return dg.AutomationResult(context, true_subset=context.get_empty_subset())
        return dg.AutomationResult(context, true_subset=context.candidate_subset)


class LineInUse(dg.AutomationCondition):
    """True while a line's views are read: always for its dataset's default topology (the first stage trains on
    those), for another topology once an experiment of the line exists (a partition of `experiments`, which the
    discovery sensor keeps equal to the experiments file). An ablation topology no experiment uses is tracked but
    never rendered."""

    def __init__(self, line: str, experiments: str, default: bool) -> None:
        self.line, self.experiments, self.default = line, experiments, default

    @property
    def name(self) -> str:
        return f"line_in_use_{self.line}"

    def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        used = self.default or bool(context.asset_graph_view.instance.get_dynamic_partitions(self.experiments))
        return dg.AutomationResult(context, true_subset=context.candidate_subset if used
                                   else context.get_empty_subset())


#: a dependency's data version changed since the previous evaluation (or it is about to be requested)
DEPS_CHANGED = A.any_deps_match(A.data_version_changed() | A.will_be_requested()).with_label("deps_data_changed")
BLOCKED = (A.any_deps_missing() | ~DepsHavePartitions() | A.any_deps_in_progress()
           | A.in_progress()).with_label("blocked")
MISSING = (A.missing() & ~A.execution_failed()).with_label("missing_not_failed")


def policy(deps_changed: A = DEPS_CHANGED, extra: A | None = None,
           label: str = "missing, code or upstream data changed") -> A:
    """missing | (code version changed | `deps_changed` | `extra`) since last handled, unless blocked (a dependency
    missing or in progress, or this partition in progress)."""
    events = A.code_version_changed() | deps_changed
    if extra is not None:
        events = events | extra
    return ((MISSING | events.since_last_handled()) & ~BLOCKED).with_label(label)


#: the default: raw inventories, tracks, views, the first stage, the comparison
POLICY = policy()

def comparison_policy(optional: dg.AssetSelection) -> A:
    """The default policy, except that the `optional` dependencies' missing partitions do not block: the
    comparison shows the animations materialized so far, and most (experiment, sequence) pairs never are."""
    blocked = (A.any_deps_missing().ignore(optional) | ~DepsHavePartitions() | A.any_deps_in_progress()
               | A.in_progress()).with_label("blocked")
    events = A.code_version_changed() | DEPS_CHANGED
    return ((MISSING | events.since_last_handled()) & ~blocked).with_label(
        "missing, code or upstream data changed (animations: those materialized)")


#: weekly regeneration of evaluation sets and metrics (cron configurable, UTC)
EVAL_CRON = os.environ.get("MORPHABLE_EVAL_CRON", "0 4 * * 1")


def evaluation_policy(recorded_inputs: dg.AssetKey) -> A:
    """Evaluation sets: missing, code, checkpoint or the protocol's recorded view stores changed, or weekly. The
    recorded view stores (`recorded_inputs`, re-run whenever any store changes) count only once their new data
    version is known, not when they are merely requested: a re-rendered training subject re-runs every protocol's
    record, which comes out the same, and no evaluation set of a protocol that does not read it is regenerated."""
    recorded = dg.AssetSelection.assets(recorded_inputs)
    deps = DEPS_CHANGED.ignore(recorded) | A.any_deps_match(A.data_version_changed()).allow(recorded)
    return policy(deps_changed=deps.with_label("deps_data_changed"),
                  extra=A.cron_tick_passed(EVAL_CRON, cron_timezone="UTC"),
                  label=f"missing, code, checkpoint or protocol views changed, or weekly ({EVAL_CRON} UTC)")


def first_stage_policy(views: dg.AssetSelection) -> A:
    """The first stage retrains when its [first_stage] table or the code change, not when a view store changes
    (like the checkpoints: retraining on new views stays a decision)."""
    return policy(deps_changed=DEPS_CHANGED.ignore(views), label="missing, code or its definition changed (not views)")


class ExperimentNeeds(dg.AutomationCondition):
    """True for the experiment partitions whose checkpoint reads `what` ("first_stage": the graph's autoencoder;
    "views": the dataset's view stores), as the experiments file defines them (pipelines.experiments.Experiment).
    A published model brings its own autoencoder and reads no view store: neither blocks nor re-imports it."""

    def __init__(self, what: str) -> None:
        if what not in ("first_stage", "views"):
            raise ValueError(f"ExperimentNeeds: unknown input {what!r}")
        self.what = what

    @property
    def name(self) -> str:
        return f"experiment_needs_{self.what}"

    def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        from pipelines.experiments import load_experiments
        from pipelines.settings import load_settings

        from storage.errors import InvalidContentError, MissingFileError

        try:
            experiments = load_experiments(load_settings().experiments_file).experiments
        except (InvalidContentError, MissingFileError):  # the experiments asset reports the file; meanwhile
            return dg.AutomationResult(context, true_subset=context.candidate_subset)  # every partition waits
        needs = (lambda e: e.needs_first_stage()) if self.what == "first_stage" else (lambda e: e.reads_training_views())
        keys = [k for k in context.candidate_subset.expensively_compute_partition_keys()
                if k not in experiments or needs(experiments[k])]  # (an unknown one: as before, it waits)
        return dg.AutomationResult(context, true_subset=context.candidate_subset.compute_intersection_with_partition_keys(
            set(keys)))


def checkpoint_policy(views: dg.AssetSelection, first_stage: dg.AssetSelection) -> A:
    """Checkpoints retrain when their experiment's definition, the code or (for the experiments that use it) the
    first stage change, not when a view store changes: retraining on new views stays a decision (the
    `training_inputs_current` check names them). The first stage and the view stores block only the experiments
    that read them: a published model is imported on a fresh instance at once, without the tiny first stage."""
    inputs = views | first_stage
    needs_first_stage, needs_views = ExperimentNeeds("first_stage"), ExperimentNeeds("views")
    deps_changed = (DEPS_CHANGED.ignore(inputs)
                    | (A.any_deps_match(A.data_version_changed() | A.will_be_requested()).allow(first_stage)
                       & needs_first_stage)).with_label("deps_data_changed")
    blocked = (A.any_deps_missing().ignore(inputs) | A.any_deps_in_progress().ignore(inputs) | A.in_progress()
               | ((A.any_deps_missing().allow(first_stage) | A.any_deps_in_progress().allow(first_stage))
                  & needs_first_stage)
               | ((A.any_deps_missing().allow(views) | A.any_deps_in_progress().allow(views) | ~DepsHavePartitions())
                  & needs_views)).with_label("blocked")
    events = A.code_version_changed() | deps_changed
    return ((MISSING | events.since_last_handled()) & ~blocked).with_label(
        "missing, code, experiment or (where used) first stage changed (not views)")


#: checks that follow their additional dependencies (views): re-evaluated when one changes
CHECK_POLICY = (A.any_deps_match(A.data_version_changed()).since_last_handled() & ~A.any_deps_missing()
                & ~A.any_deps_in_progress()).with_label("deps_data_changed")
