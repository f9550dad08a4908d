"""Evaluation assets, per line (dataset x topology): what each protocol reads from the line's view stores
(partitioned by protocol), and, partitioned by experiment x protocol, the generated evaluation set (GPU process,
pool `gpu_heavy`; baselines in process), its metric tables; and the comparison across every line's experiments.

Each partition reads the lineage record of exactly the upstream partitions it depends on (its experiment's
checkpoint, its protocol's view stores, its own evaluation set): assets_defs/lineage.py. An evaluation set is
regenerated when its checkpoint's data version or its protocol's view stores change (a re-tracked held-out subject:
exactly the protocols that read it), and weekly; metrics follow their evaluation set; the comparison follows the
metrics. The stages' work is in pipelines/ (protocols.record_protocol_views, experiment_steps.eval_set_step,
scoring.score_evaluation, comparison.compare); these assets call them and record what they return.
"""
import dagster as dg

from assets_defs.animation import ANIMATION_ASSETS
from assets_defs.automation import POLICY, comparison_policy, evaluation_policy
from assets_defs.gpu_steps import k8s_gpu_tags, run_gpu_task
from assets_defs.outcomes import dagster_metadata, output, plain, reported_output
from assets_defs.partitions import (BY_EXPERIMENT, BY_PROTOCOL, DATASET_PROTOCOLS, EVALUATION_PARTITIONS, LINES,
                                   evaluation_key)
from assets_defs.pools import CPU_POOL, GPU_POOL
from assets_defs.resources import SettingsResource
from assets_defs.training import CHECKPOINT_ASSETS
from assets_defs.views import VIEW_ASSETS
from pipelines.catalog import TopologySpec

EVAL_GROUP = "evaluation"
PROTOCOL_VIEWS_VERSION = "protocol-views-1"
EVAL_SET_VERSION = "eval-set-4"  # 3: conditioning ablations, mesh silhouettes; 4: body sets hold SMPL-X vertices
#: 3: mesh IoU columns, ablation rows, held-out sample sheet; 4: face metrics judged where a ground-truth face is
#: (visible); 5: body PCK (fitted SMPL-X keypoints) on THuman
METRICS_VERSION = "metrics-5"
COMPARISON_KEY = dg.AssetKey(["evaluation", "comparison"])


def _key(topology: TopologySpec, name: str) -> dg.AssetKey:
    return dg.AssetKey(["evaluation", topology.dataset, topology.name, name])


def generated_key(topology: TopologySpec) -> dg.AssetKey:
    return _key(topology, "generated")


def metrics_key(topology: TopologySpec) -> dg.AssetKey:
    return _key(topology, "metrics")


def protocol_views_key(topology: TopologySpec) -> dg.AssetKey:
    return _key(topology, "protocol_views")


def _protocol_views_asset(line: str) -> dg.AssetsDefinition:
    topology = LINES[line]
    dataset = topology.dataset

    @dg.asset(key=protocol_views_key(topology),
              partitions_def=dg.StaticPartitionsDefinition(DATASET_PROTOCOLS[dataset]),
              deps=[dg.AssetDep(VIEW_ASSETS[line], partition_mapping=dg.AllPartitionMapping())],
              code_version=PROTOCOL_VIEWS_VERSION, group_name=EVAL_GROUP, pool=CPU_POOL, kinds={"zarr"},
              owners=["team:morphable"], io_manager_key="lineage", automation_condition=POLICY,
              description=f"Which {dataset} view stores ({topology.name} meshes) a protocol's evaluation reads (its "
                          "pairs, each store's content hash). Data version = their digest: it changes only when a "
                          "store the protocol reads changes, so a re-tracked subject re-evaluates exactly the "
                          "protocols that use it.")
    def protocol_views(context: dg.AssetExecutionContext, settings: SettingsResource) -> dg.Output:
        from pipelines.protocols import record_protocol_views

        record, metadata = record_protocol_views(context.partition_key, dataset, topology.name,
                                                 settings.load().storage_root)
        return output(record, record.digest, metadata)

    return protocol_views


def _eval_set_asset(line: str) -> dg.AssetsDefinition:
    topology = LINES[line]

    @dg.asset(key=generated_key(topology), partitions_def=EVALUATION_PARTITIONS[line],
              ins={"checkpoint": dg.AssetIn(CHECKPOINT_ASSETS[line].key, partition_mapping=BY_EXPERIMENT),
                   "protocol_views": dg.AssetIn(protocol_views_key(topology), partition_mapping=BY_PROTOCOL)},
              code_version=EVAL_SET_VERSION, group_name=EVAL_GROUP, pool=GPU_POOL, kinds={"pytorch", "numpy"},
              owners=["team:morphable"], op_tags=k8s_gpu_tags(1), io_manager_key="lineage",
              automation_condition=evaluation_policy(protocol_views_key(topology)),
              description=f"A {topology.dataset} protocol's generated views on {topology.name} meshes, beside their "
                          "ground truth, with one experiment's checkpoint (its sampler settings) or baseline.")
    def eval_set(context: dg.AssetExecutionContext, settings: SettingsResource, checkpoint,
                 protocol_views) -> dg.Output:
        from pipelines.experiment_steps import eval_set_record, eval_set_step
        from pipelines.experiments import load_experiments

        experiment, protocol = evaluation_key(context.partition_key)
        s = settings.load()
        step = eval_set_step(s, load_experiments(s.experiments_file).get(experiment), protocol, checkpoint,
                             protocol_views)
        if step.in_process:  # a baseline: no network
            from pipelines.worker import run_eval_set

            meta, version = run_eval_set(s, step.config, context.log.info)
            report = dg.MaterializeResult(metadata=dagster_metadata(meta), data_version=dg.DataVersion(version))
        else:
            report = run_gpu_task(context, "eval_set", step.config, settings.settings_file)
        meta = report.metadata or {}
        record = eval_set_record(experiment, protocol, checkpoint, protocol_views, str(plain(meta["dagster/uri"])),
                                 plain(meta["ablation_sets"]) if "ablation_sets" in meta else None)
        report = dg.MaterializeResult(metadata={**meta, "protocol_views": protocol_views.digest},
                                      data_version=report.data_version)
        return reported_output(record, report)

    return eval_set


def _metrics_asset(line: str) -> dg.AssetsDefinition:
    topology = LINES[line]
    key = metrics_key(topology)

    @dg.asset(key=key, partitions_def=EVALUATION_PARTITIONS[line], ins={"eval_set": dg.AssetIn(generated_key(topology))},
              code_version=METRICS_VERSION, group_name=EVAL_GROUP, pool=CPU_POOL, kinds={"pandas", "parquet"},
              owners=["team:morphable"], io_manager_key="lineage", automation_condition=POLICY,
              description=f"PSNR, SSIM, LPIPS, FID, PCK@0.2, Re-ID, masked PSNR and silhouette IoU of one "
                          f"{topology.dataset} evaluation set on {topology.name} meshes (per view, per subject, per "
                          "protocol parquet tables, labelled with the experiment), added to the history.",
              check_specs=[dg.AssetCheckSpec(n, asset=key) for n in ("no_nan", "value_ranges")])
    def metrics(context: dg.AssetExecutionContext, settings: SettingsResource, eval_set):
        from pipelines.scoring import score_evaluation

        experiment, _ = evaluation_key(context.partition_key)
        outcome = score_evaluation(settings.load(), experiment, topology.dataset, topology.name, eval_set,
                                   log=context.log.info)
        yield output(outcome.record, outcome.data_version, outcome.metadata)
        for j in outcome.judgements:
            yield dg.AssetCheckResult(check_name=j.name, passed=j.passed, metadata=dagster_metadata(j.info))

    return metrics


#: per line (`<dataset>_<topology>`)
PROTOCOL_VIEW_ASSETS = {line: _protocol_views_asset(line) for line in LINES}
EVAL_SET_ASSETS = {line: _eval_set_asset(line) for line in LINES}
METRIC_ASSETS = {line: _metrics_asset(line) for line in LINES}


@dg.asset(key=COMPARISON_KEY, ins={**{f"{line}_metrics": dg.AssetIn(metrics_key(t)) for line, t in LINES.items()},
                                   **{f"{line}_animation": dg.AssetIn(a.key) for line, a in ANIMATION_ASSETS.items()}},
          code_version=METRICS_VERSION, group_name=EVAL_GROUP, kinds={"pandas", "parquet"}, owners=["team:morphable"],
          io_manager_key="lineage",
          automation_condition=comparison_policy(dg.AssetSelection.assets(*ANIMATION_ASSETS.values())),
          description="The paper-style table across experiments of every line: one row per experiment and "
                      "checkpoint, each protocol's metrics as columns (parquet, markdown, plot); the history keeps "
                      "every (experiment, checkpoint, protocol) row ever evaluated. Beside it, the animations "
                      "materialized so far: one row per experiment, sequence and sampler.")
def comparison(context: dg.AssetExecutionContext, settings: SettingsResource, **inputs) -> dg.Output:
    from pipelines.comparison import compare

    metrics = [r for name, per_line in inputs.items() if name.endswith("_metrics") for r in per_line.values()]
    animations = [r for name, per_line in inputs.items() if name.endswith("_animation") for r in per_line.values()]
    outcome = compare(settings.load(), metrics, animations)
    return output(outcome.record, outcome.data_version, outcome.metadata)
