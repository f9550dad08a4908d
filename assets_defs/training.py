"""Model assets: the tiny first stage and one checkpoint per experiment (partition) and dataset.

A checkpoint partition is what its experiment says: a training run (GPU process, pool `gpu_heavy`), the import of a
released checkpoint, or a baseline (no weights). It returns a reference (assets_defs/references.py) that its
evaluations read. It retrains when its experiment's definition, the first stage or the training code changes, not
when a view store changes: the `training_inputs_current` check names the subjects whose views changed since.
"""
import os

import dagster as dg

from assets_defs.automation import CHECK_POLICY, checkpoint_policy, first_stage_policy
from assets_defs.experiments import EXPERIMENT_SOURCES
from assets_defs.gpu_steps import k8s_gpu_tags, run_gpu_task
from assets_defs.partitions import EXPERIMENT_PARTITIONS
from assets_defs.pools import GPU_POOL
from assets_defs.references import ReferenceIOManager
from assets_defs.resources import SettingsResource
from assets_defs.views import VIEW_ASSETS

MODEL_GROUP = "model"
FIRST_STAGE_VERSION = "first-stage-3"  # 3: init from a checkpoint (steps 0: used as it is)


def _first_stage_version() -> str:
    """The code version plus the digest of the experiments file's [first_stage] table, so that editing it retrains
    the first stage (read when the code location loads; a broken file fails the asset itself, by name)."""
    import dataclasses
    import hashlib
    import json

    try:
        from pipelines.experiments import load_experiments
        from pipelines.settings import load_settings

        cfg = dataclasses.asdict(load_experiments(load_settings().experiments_file).first_stage)
        if cfg.get("init"):  # an autoencoder taken from a checkpoint: its content, not only its path
            from storage.checkpoints import checkpoint_hash

            cfg["init_hash"] = checkpoint_hash(cfg["init"])
    except Exception:  # noqa: BLE001 - reported when the asset runs
        return FIRST_STAGE_VERSION
    return f"{FIRST_STAGE_VERSION}-{hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:8]}"
TRAIN_VERSION = "train-4"  # 4: an init folder brings its autoencoder config (latent scale)
FIRST_STAGE_KEY = dg.AssetKey(["model", "first_stage"])
ALL_SUBJECTS = dg.AllPartitionMapping()


class LaunchConfig(dg.Config):
    """How to run a training step (what to train is the experiment's definition, in the experiments file)."""

    gpus: int = 1  # > 1: DDP under torchrun, one process per GPU (on Kubernetes also set MORPHABLE_TRAIN_GPUS)
    resume: bool = False  # continue the run from its last checkpoint, exactly


def _outputs(result: dg.MaterializeResult, reference: dict) -> dg.Output:
    """The worker's report as an Output carrying the reference the downstream partitions read."""
    return dg.Output(reference, metadata=dict(result.metadata or {}), data_version=result.data_version)


@dg.asset(key=FIRST_STAGE_KEY, deps=[dg.AssetDep(v, partition_mapping=ALL_SUBJECTS) for v in VIEW_ASSETS.values()],
          code_version=_first_stage_version(), group_name=MODEL_GROUP, pool=GPU_POOL, kinds={"pytorch", "safetensors"},
          owners=["team:morphable"], op_tags=k8s_gpu_tags(1), io_manager_key="references",
          automation_condition=first_stage_policy(dg.AssetSelection.assets(*VIEW_ASSETS.values())),
          description="The tiny preset's KL autoencoder ([first_stage] of the experiments file), trained on every "
                      "dataset's training views; judged by held-out reconstruction PSNR (the paper preset uses the "
                      "SD VAE inside syncdreamer-pretrain.ckpt).",
          check_specs=[dg.AssetCheckSpec("heldout_psnr", asset=FIRST_STAGE_KEY,
                                         description="decode(encode(x)) PSNR on every dataset's held-out views "
                                                     "meets that dataset's bar (FaceScape 25 dB, THuman 21 dB)")])
def first_stage(context: dg.AssetExecutionContext, settings: SettingsResource):
    import dataclasses

    from pipelines.experiments import load_experiments
    from pipelines.first_stage import judge_heldout_psnr

    cfg = load_experiments(settings.load().experiments_file).first_stage
    result = run_gpu_task(context, "first_stage", dataclasses.asdict(cfg), settings.settings_file)
    psnr = result.metadata["psnr_heldout"]
    passed, table = judge_heldout_psnr(psnr.value if hasattr(psnr, "value") else psnr, tuple(cfg.datasets))
    uri = str(result.metadata["dagster/uri"].value)
    yield _outputs(result, {"folder": uri, "checkpoint_hash": result.data_version.value})
    yield dg.AssetCheckResult(check_name="heldout_psnr", passed=passed,
                              metadata={"per_dataset": dg.MetadataValue.json(table)})


def _checkpoint_reference(experiment, folder: str | None, digest: str) -> dict:
    return {"experiment": experiment.name, "kind": experiment.kind, "dataset": experiment.dataset,
            "topology": experiment.topology, "folder": folder, "checkpoint_hash": digest,
            "method": experiment.method, "image_size": experiment.image_size}


def _checkpoint_asset(dataset: str):
    key = dg.AssetKey([dataset, "checkpoint"])
    views = VIEW_ASSETS[dataset]

    @dg.asset(key=key, partitions_def=EXPERIMENT_PARTITIONS[dataset], code_version=TRAIN_VERSION,
              deps=[FIRST_STAGE_KEY, EXPERIMENT_SOURCES[dataset], dg.AssetDep(views, partition_mapping=ALL_SUBJECTS)],
              op_tags=k8s_gpu_tags(int(os.environ.get("MORPHABLE_TRAIN_GPUS", "1"))), io_manager_key="references",
              automation_condition=checkpoint_policy(dg.AssetSelection.assets(views),
                                                     dg.AssetSelection.assets(FIRST_STAGE_KEY)),
              group_name=MODEL_GROUP, pool=GPU_POOL, kinds={"pytorch", "safetensors"}, owners=["team:morphable"],
              description=f"One {dataset} experiment's model: trained (GPU process), a released checkpoint imported "
                          "into the store, or a baseline. Data version = weights hash.")
    def checkpoint(context: dg.AssetExecutionContext, settings: SettingsResource, config: LaunchConfig,
                   references: dg.ResourceParam[ReferenceIOManager]) -> dg.Output:
        import dataclasses

        from pipelines.experiments import load_experiments

        s = settings.load()
        exp = load_experiments(s.experiments_file).get(context.partition_key)
        context.log.info(f"experiment {exp.name} ({exp.kind}): {exp.description}")
        if exp.kind == "baseline":
            digest = f"baseline-{exp.method}{exp.image_size}"
            return dg.Output(_checkpoint_reference(exp, None, digest), data_version=dg.DataVersion(digest),
                             metadata={"kind": "baseline", "method": exp.method, "image_size": exp.image_size})
        if exp.kind == "published":
            from storage.checkpoints import find_checkpoint

            file = exp.file if exp.file is not None else find_checkpoint(s.storage_root, exp.checkpoint)
            result = run_gpu_task(context, "import", {"file": str(file), "projection": exp.projection,
                                                      "topology": exp.topology, "name": exp.name},
                                  settings.settings_file)
        else:
            cfg = exp.train_config()
            if cfg.preset == "paper" and not cfg.init and s.syncdreamer_checkpoint:
                cfg = dataclasses.replace(cfg, init=str(s.syncdreamer_checkpoint))
            if exp.needs_first_stage():  # (only these read it: the first stage is a dependency, not an input)
                cfg = dataclasses.replace(cfg, first_stage=references.read(FIRST_STAGE_KEY)["folder"])
            result = run_gpu_task(context, "train", {**dataclasses.asdict(cfg), "resume": config.resume},
                                  settings.settings_file, gpus=config.gpus)
        folder = str(result.metadata["dagster/uri"].value)
        return _outputs(result, _checkpoint_reference(exp, folder, result.data_version.value))

    # one check over all of the dataset's experiments (not one per experiment partition): Dagster 1.13 keeps no
    # automation cursor for a partitioned check (its evaluation is "initial" every tick, so "a view store's data
    # version changed" never fires); the failure's metadata names each stale experiment and its changed subjects
    @dg.asset_check(asset=key, name="training_inputs_current",
                    additional_deps=[dg.AssetDep(views, partition_mapping=ALL_SUBJECTS)],
                    automation_condition=CHECK_POLICY,
                    description="Passes while every view store each trained experiment's checkpoint was trained on "
                                "is unchanged; a failure lists, per experiment, the subjects to retrain on "
                                "(retraining stays an explicit action).")
    def training_inputs_current(context: dg.AssetCheckExecutionContext, settings: SettingsResource,
                                references: dg.ResourceParam[ReferenceIOManager]) -> dg.AssetCheckResult:
        # every experiment's current checkpoint, also when the check runs beside one experiment's training: a pass
        # must never hide another experiment that is stale
        experiments = context.instance.get_dynamic_partitions(EXPERIMENT_PARTITIONS[dataset].name)
        return inputs_current_per_experiment(settings.load(), dataset, references.read_partitions(key, experiments))

    return checkpoint, training_inputs_current


def inputs_current(settings, dataset: str, checkpoint: str | None) -> dg.AssetCheckResult:
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
    stale = changed_training_views(settings.storage_root, dataset, trained_on)
    return dg.AssetCheckResult(passed=not stale, severity=dg.AssetCheckSeverity.WARN,
                               metadata={"subjects_trained_on": len(trained_on),
                                         "changed_since_training": dg.MetadataValue.json(stale)})


def inputs_current_per_experiment(settings, dataset: str, references: dict[str, dict]) -> dg.AssetCheckResult:
    """`inputs_current` for every trained experiment's checkpoint ({experiment: reference}); fails (WARN) when any
    is stale, naming the experiments and their changed subjects."""
    per: dict[str, dict] = {}
    for name, ref in sorted(references.items()):
        if ref.get("kind") != "trained":
            continue
        result = inputs_current(settings, dataset, ref.get("folder"))
        per[name] = {"passed": result.passed, **{k: getattr(v, "value", v) for k, v in result.metadata.items()}}
    stale = sorted(name for name, r in per.items() if not r["passed"])
    return dg.AssetCheckResult(passed=not stale, severity=dg.AssetCheckSeverity.WARN,
                               metadata={"stale_experiments": dg.MetadataValue.json(stale),
                                         "trained_experiments": len(per),
                                         "per_experiment": dg.MetadataValue.json(per)})


facescape_checkpoint, facescape_inputs_check = _checkpoint_asset("facescape")
thuman_checkpoint, thuman_inputs_check = _checkpoint_asset("thuman")
CHECKPOINT_ASSETS = {"facescape": facescape_checkpoint, "thuman": thuman_checkpoint}
TRAINING_CHECKS = [facescape_inputs_check, thuman_inputs_check]
