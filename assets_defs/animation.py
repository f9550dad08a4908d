"""The animation asset, per face line: an experiment's checkpoint driven through a declared sequence
(pipelines/animations.py: ANIMATIONS), partitioned by experiment x sequence.

It runs in the GPU pool like the evaluation sets (its own process on a GPU machine) and shows the front view over
time (ground truth, the experiment's sampler, independent sampling) in its metadata, with the grid video's path
and the scores per sampler; the comparison collects its rows. The daemon keeps current the partitions an experiment
declares (`animations = [...]` in the experiments file; none in the embedded demo, whose budget an animation would
exceed); any other partition is materialized on request from the UI. A partition regenerates when its checkpoint's
data version, its code or its settings (the experiment's [sampler] and `animation`, the sequence) change; a
re-rendered view store is read at the next run (its hash is in the version).
"""

import dagster as dg

from assets_defs.automation import DEPS_CHANGED, MISSING, A
from assets_defs.gpu_steps import k8s_gpu_tags, run_gpu_task
from assets_defs.outcomes import plain, reported_output
from assets_defs.partitions import BY_EXPERIMENT, EXPERIMENT_PARTITIONS, LINES
from assets_defs.pools import GPU_POOL
from assets_defs.resources import SettingsResource
from assets_defs.training import CHECKPOINT_ASSETS
from assets_defs.views import VIEW_ASSETS
from pipelines.animations import ANIMATION_STAGE_VERSION, line_animations
from pipelines.catalog import TopologySpec

ANIMATION_GROUP = "animation"


def animation_key(topology: TopologySpec) -> dg.AssetKey:
    return dg.AssetKey(["evaluation", topology.dataset, topology.name, "animation"])


def animation_partition(partition_key) -> tuple[str, str]:
    """(experiment, sequence) of an animation partition key."""
    keys = partition_key.keys_by_dimension if hasattr(partition_key, "keys_by_dimension") else \
        dict(zip(("experiment", "sequence"), str(partition_key).split("|")))
    return keys["experiment"], keys["sequence"]


class _ByExperiment(dg.AutomationCondition):
    """True for the candidate partitions that `keep` accepts, given the experiments file's definitions (none while
    the file cannot be read: the experiments asset reports it)."""

    def keep(self, context: dg.AutomationContext, key, experiment, sequence: str) -> bool:
        raise NotImplementedError

    def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        from pipelines.experiments import load_experiments
        from pipelines.settings import load_settings
        from storage.errors import DataError

        try:
            experiments = load_experiments(load_settings().experiments_file).experiments
        except DataError:
            return dg.AutomationResult(context, true_subset=context.get_empty_subset())
        keys = set()
        for key in context.candidate_subset.expensively_compute_partition_keys():
            name, sequence = animation_partition(key)
            if name in experiments and self.keep(context, key, experiments[name], sequence):
                keys.add(key)
        return dg.AutomationResult(context, true_subset=context.candidate_subset.compute_intersection_with_partition_keys(
            keys))


class AnimationDeclared(_ByExperiment):
    """True for the partitions whose experiment lists the sequence in its `animations` (the experiments file)."""

    @property
    def name(self) -> str:
        return "animation_declared"

    def keep(self, context, key, experiment, sequence: str) -> bool:
        return sequence in experiment.animations


class AnimationSettingsChanged(_ByExperiment):
    """True for the materialized partitions whose recorded settings (sequence, sampler, animation sampler) differ
    from what the experiments file asks for now: those settings are not in the experiment's digest (it versions the
    checkpoint), so a changed `animation = {...}` or [sampler] is noticed here."""

    @property
    def name(self) -> str:
        return "animation_settings_changed"

    def keep(self, context, key, experiment, sequence: str) -> bool:
        from assets_defs.lineage import LineageIOManager
        from pipelines.animations import experiment_settings_digest
        from storage.errors import DataError

        try:
            recorded = LineageIOManager(settings=SettingsResource()).read_partitions(context.key, [str(key)])
        except DataError:  # an unreadable record: the partition's own run reports it
            return False
        record = recorded.get(str(key))
        return record is not None and record.settings != experiment_settings_digest(experiment, sequence)


def animation_policy(views: dg.AssetSelection) -> A:
    """Declared partitions: missing, code, checkpoint or their settings changed (not a view store: read at the next
    run)."""
    events = A.code_version_changed() | DEPS_CHANGED.ignore(views)
    blocked = (A.any_deps_missing().ignore(views) | A.any_deps_in_progress() | A.in_progress()).with_label("blocked")
    changed = (AnimationSettingsChanged() & ~A.execution_failed()).with_label("settings_changed_not_failed")
    return ((MISSING | events.since_last_handled() | changed) & ~blocked & AnimationDeclared()).with_label(
        "declared by its experiment: missing, code, checkpoint or its settings changed")


def _animation_asset(line: str) -> dg.AssetsDefinition:
    topology = LINES[line]
    partitions = dg.MultiPartitionsDefinition({
        "experiment": EXPERIMENT_PARTITIONS[line],
        "sequence": dg.StaticPartitionsDefinition(line_animations(topology.dataset, topology.name))})
    views = dg.AssetSelection.assets(VIEW_ASSETS[line])

    @dg.asset(key=animation_key(topology), partitions_def=partitions,
              ins={"checkpoint": dg.AssetIn(CHECKPOINT_ASSETS[line].key, partition_mapping=BY_EXPERIMENT)},
              deps=[dg.AssetDep(VIEW_ASSETS[line], partition_mapping=dg.AllPartitionMapping())],
              code_version=ANIMATION_STAGE_VERSION, group_name=ANIMATION_GROUP, pool=GPU_POOL,
              kinds={"pytorch", "webp"}, owners=["team:morphable"], op_tags=k8s_gpu_tags(1), io_manager_key="lineage",
              automation_condition=animation_policy(views),
              description=f"An experiment's {topology.dataset} model animated through a driving sequence "
                          "(pipelines/animations.py): 16 views per frame with its sampler and with independent "
                          "sampling (the baseline), the ground truth, the temporal, expression, identity and "
                          "per-frame image scores, videos and a strip of the front view.")
    def animation(context: dg.AssetExecutionContext, settings: SettingsResource, checkpoint) -> dg.Output:
        from pipelines.animations import animation_config, animation_record
        from pipelines.experiments import load_experiments

        experiment, sequence = animation_partition(context.partition_key)
        s = settings.load()
        config = animation_config(s, load_experiments(s.experiments_file).get(experiment), sequence, checkpoint)
        report = run_gpu_task(context, "animation", config, settings.settings_file)
        record = animation_record(experiment, sequence, checkpoint, str(plain(report.metadata["dagster/uri"])))
        return reported_output(record, report)

    return animation


#: per line that has sequences
ANIMATION_ASSETS = {line: _animation_asset(line) for line, t in LINES.items() if line_animations(t.dataset, t.name)}
