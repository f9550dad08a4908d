"""Model assets: the tiny first stage and one checkpoint per experiment (partition) and line (dataset x topology).

A checkpoint partition is what its experiment says (pipelines/experiment_steps.py): a training run (GPU process,
pool `gpu_heavy`), the import of a released checkpoint, or a baseline (no weights). It returns a lineage record
that its evaluations read. It retrains when its experiment's definition, the first stage or the training code
changes, not when a view store changes: the `training_inputs_current` check names the subjects whose views changed.
"""
import os

import dagster as dg

from assets_defs.automation import CHECK_POLICY, checkpoint_policy, first_stage_policy
from assets_defs.experiments import EXPERIMENT_SOURCES
from assets_defs.gpu_steps import k8s_gpu_tags, run_gpu_task
from assets_defs.lineage import LineageIOManager
from assets_defs.outcomes import output, plain, reported_output
from assets_defs.partitions import EXPERIMENT_PARTITIONS, LINES, line_key
from assets_defs.pools import GPU_POOL
from assets_defs.resources import SettingsResource
from assets_defs.views import DEFAULT_VIEW_ASSETS, VIEW_ASSETS
from pipelines import catalog

MODEL_GROUP = "model"
FIRST_STAGE_VERSION = "first-stage-3"  # 3: init from a checkpoint (steps 0: used as it is)


def _first_stage_version() -> str:
    """The code version plus the digest of the experiments file's [first_stage] table, so that editing it retrains
    the first stage (read when the code location loads; a broken file fails the asset itself, by name)."""
    import dataclasses

    from storage.hashing import hash_json

    try:
        from pipelines.experiments import load_experiments
        from pipelines.settings import load_settings

        cfg = dataclasses.asdict(load_experiments(load_settings().experiments_file).first_stage)
        if cfg.get("init"):  # an autoencoder taken from a checkpoint: its content, not only its path
            from storage.checkpoints import checkpoint_hash

            cfg["init_hash"] = checkpoint_hash(cfg["init"])
    except Exception:  # noqa: BLE001 - reported when the asset runs
        return FIRST_STAGE_VERSION
    return f"{FIRST_STAGE_VERSION}-{hash_json(cfg, 8, spaced=True)}"


TRAIN_VERSION = "train-4"  # 4: an init folder brings its autoencoder config (latent scale)
FIRST_STAGE_KEY = dg.AssetKey(["model", "first_stage"])
ALL_SUBJECTS = dg.AllPartitionMapping()


class LaunchConfig(dg.Config):
    """How to run a training step (what to train is the experiment's definition, in the experiments file)."""

    gpus: int = 1  # > 1: DDP under torchrun, one process per GPU (on Kubernetes also set MORPHABLE_TRAIN_GPUS)
    resume: bool = False  # continue the run from its last checkpoint, exactly


@dg.asset(key=FIRST_STAGE_KEY,
          deps=[dg.AssetDep(v, partition_mapping=ALL_SUBJECTS) for v in DEFAULT_VIEW_ASSETS.values()],
          code_version=_first_stage_version(), group_name=MODEL_GROUP, pool=GPU_POOL, kinds={"pytorch", "safetensors"},
          owners=["team:morphable"], op_tags=k8s_gpu_tags(1), io_manager_key="lineage",
          automation_condition=first_stage_policy(dg.AssetSelection.assets(*DEFAULT_VIEW_ASSETS.values())),
          description="The tiny preset's KL autoencoder ([first_stage] of the experiments file), trained on every "
                      "dataset's training views (its default topology's stores: the images are the same in every "
                      "topology's); judged by held-out reconstruction PSNR (the paper preset uses the "
                      "SD VAE inside syncdreamer-pretrain.ckpt).",
          check_specs=[dg.AssetCheckSpec("heldout_psnr", asset=FIRST_STAGE_KEY,
                                         description="decode(encode(x)) PSNR on every dataset's held-out views "
                                                     "meets that dataset's bar (" + ", ".join(
                                                         f"{d.title} {d.first_stage_bar_db:g} dB"
                                                         for d in catalog.DATASETS.values()) + ")")])
def first_stage(context: dg.AssetExecutionContext, settings: SettingsResource):
    import dataclasses

    from pipelines.experiments import load_experiments
    from pipelines.first_stage import judge_heldout_psnr
    from pipelines.records import FirstStageRecord

    cfg = load_experiments(settings.load().experiments_file).first_stage
    result = run_gpu_task(context, "first_stage", dataclasses.asdict(cfg), settings.settings_file)
    psnr = result.metadata["psnr_heldout"]
    passed, table = judge_heldout_psnr(plain(psnr), tuple(cfg.datasets))
    yield reported_output(FirstStageRecord(str(plain(result.metadata["dagster/uri"])), result.data_version.value),
                          result)
    yield dg.AssetCheckResult(check_name="heldout_psnr", passed=passed,
                              metadata={"per_dataset": dg.MetadataValue.json(table)})


def _checkpoint_asset(line: str):
    topology = LINES[line]
    key = line_key(topology, "checkpoint")
    views = VIEW_ASSETS[line]

    @dg.asset(key=key, partitions_def=EXPERIMENT_PARTITIONS[line], code_version=TRAIN_VERSION,
              deps=[FIRST_STAGE_KEY, EXPERIMENT_SOURCES[line], dg.AssetDep(views, partition_mapping=ALL_SUBJECTS)],
              op_tags=k8s_gpu_tags(int(os.environ.get("MORPHABLE_TRAIN_GPUS", "1"))), io_manager_key="lineage",
              automation_condition=checkpoint_policy(dg.AssetSelection.assets(views),
                                                     dg.AssetSelection.assets(FIRST_STAGE_KEY)),
              group_name=MODEL_GROUP, pool=GPU_POOL, kinds={"pytorch", "safetensors"}, owners=["team:morphable"],
              description=f"One {topology.dataset} experiment's model on {topology.name} meshes: trained (GPU "
                          "process), a released checkpoint imported into the store, or a baseline. Data version = "
                          "weights hash.")
    def checkpoint(context: dg.AssetExecutionContext, settings: SettingsResource, config: LaunchConfig,
                   lineage: dg.ResourceParam[LineageIOManager]) -> dg.Output:
        from pipelines.experiment_steps import checkpoint_record, checkpoint_step
        from pipelines.experiments import load_experiments

        s = settings.load()
        exp = load_experiments(s.experiments_file).get(context.partition_key)
        context.log.info(f"experiment {exp.name} ({exp.kind}, {exp.dataset}/{exp.topology}): {exp.description}")
        step = checkpoint_step(s, exp, lambda: lineage.read(FIRST_STAGE_KEY).folder, config.resume, config.gpus)
        if step.task is None:
            return output(checkpoint_record(exp, None, step.digest), step.digest, step.metadata)
        report = run_gpu_task(context, step.task, step.config, settings.settings_file, gpus=step.gpus)
        folder = str(plain(report.metadata["dagster/uri"]))
        return reported_output(checkpoint_record(exp, folder, report.data_version.value), report)

    # one check over all of the line's experiments (not one per experiment partition): Dagster 1.13 keeps no
    # automation cursor for a partitioned check (its evaluation is "initial" every tick, so "a view store's data
    # version changed" never fires); the failure's metadata names each stale experiment and its changed subjects
    @dg.asset_check(asset=key, name="training_inputs_current",
                    additional_deps=[dg.AssetDep(views, partition_mapping=ALL_SUBJECTS)],
                    automation_condition=CHECK_POLICY,
                    description="Passes while every view store each trained experiment's checkpoint was trained on "
                                "is unchanged; a failure lists, per experiment, the subjects to retrain on "
                                "(retraining stays an explicit action).")
    def training_inputs_current(context: dg.AssetCheckExecutionContext, settings: SettingsResource,
                                lineage: dg.ResourceParam[LineageIOManager]) -> dg.AssetCheckResult:
        # every experiment's current checkpoint, also when the check runs beside one experiment's training: a pass
        # must never hide another experiment that is stale
        experiments = context.instance.get_dynamic_partitions(EXPERIMENT_PARTITIONS[line].name)
        return inputs_current_per_experiment(settings.load(), lineage.read_partitions(key, experiments))

    return checkpoint, training_inputs_current


def inputs_current(settings, checkpoint: str | None) -> dg.AssetCheckResult:
    """Passes while every view store the checkpoint was trained on has the content it had then; fails (WARN) with
    the changed subjects, and when the checkpoint records no training views at all (nothing can be vouched for)."""
    from pathlib import Path

    from pipelines.train import changed_training_views
    from storage.jsonfile import read_json

    if checkpoint is None:
        return dg.AssetCheckResult(passed=False, metadata={"reason": "no checkpoint yet"})
    config = read_json(Path(checkpoint) / "config.json", "the checkpoint's configuration")
    trained_on = config.get("views")
    if not trained_on:
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN,
                                   metadata={"reason": "the checkpoint records no training views, so whether they "
                                                       "changed cannot be checked"})
    training = config.get("training") or {}
    dataset = training.get("dataset", "")
    topology = catalog.topology(dataset, training.get("topology")).name  # (none recorded: the default)
    stale = changed_training_views(settings.storage_root, dataset, topology, trained_on)
    return dg.AssetCheckResult(passed=not stale, severity=dg.AssetCheckSeverity.WARN,
                               metadata={"subjects_trained_on": len(trained_on),
                                         "changed_since_training": dg.MetadataValue.json(stale)})


def inputs_current_per_experiment(settings, records: dict) -> dg.AssetCheckResult:
    """`inputs_current` for every trained experiment's checkpoint ({experiment: CheckpointRecord}); fails (WARN)
    when any is stale, naming the experiments and their changed subjects."""
    per: dict[str, dict] = {}
    for name, rec in sorted(records.items()):
        if rec.kind != "trained":
            continue
        result = inputs_current(settings, rec.folder)
        per[name] = {"passed": result.passed, **{k: getattr(v, "value", v) for k, v in result.metadata.items()}}
    stale = sorted(name for name, r in per.items() if not r["passed"])
    return dg.AssetCheckResult(passed=not stale, severity=dg.AssetCheckSeverity.WARN,
                               metadata={"stale_experiments": dg.MetadataValue.json(stale),
                                         "trained_experiments": len(per),
                                         "per_experiment": dg.MetadataValue.json(per)})


#: per line (`<dataset>_<topology>`)
_CHECKPOINTS = {line: _checkpoint_asset(line) for line in LINES}
CHECKPOINT_ASSETS = {line: asset for line, (asset, _) in _CHECKPOINTS.items()}
TRAINING_CHECKS = {line: check for line, (_, check) in _CHECKPOINTS.items()}
