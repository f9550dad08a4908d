"""Model assets: the tiny first stage and one diffusion checkpoint per dataset, each trained in its own process on
one GPU (pool `gpu_heavy`). Retraining is an explicit action; the `training_inputs_current` check says when the
view stores changed since the checkpoint was trained."""
import os

import dagster as dg

from assets_defs.gpu_steps import k8s_gpu_tags, latest_uri, run_gpu_task
from assets_defs.resources import SettingsResource
from assets_defs.run_config import dagster_config
from assets_defs.views import VIEW_ASSETS
from pipelines.first_stage import FirstStageConfig
from pipelines.train import TrainConfig

MODEL_GROUP = "model"
FIRST_STAGE_VERSION = "first-stage-1"
TRAIN_VERSION = "train-2"
FIRST_STAGE_KEY = dg.AssetKey(["model", "first_stage"])


#: run config of `model/first_stage`: every FirstStageConfig field (pipelines.first_stage)
FirstStageAssetConfig = dagster_config(FirstStageConfig, "FirstStageAssetConfig", exclude=("preset",))

#: run config of the checkpoints: every TrainConfig field but those the asset sets itself (dataset, run name, init,
#: first stage), with the asset's own budget as defaults, plus the launch options
TrainingAssetConfig = dagster_config(
    TrainConfig, "TrainingAssetConfig", exclude=("dataset", "name", "init", "first_stage", "first_stage_steps"),
    defaults={"steps": 300, "batch_size": 4, "ckpt_every": 100},
    extra={"resume": (bool, False, "continue the run from its last checkpoint, exactly"),
           "gpus": (int, 1, "> 1: DDP under torchrun, one process per GPU (on Kubernetes also set "
                            "MORPHABLE_TRAIN_GPUS)")})


def _with_check(result: dg.MaterializeResult, checks: list[dg.AssetCheckResult]) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata=result.metadata, data_version=result.data_version, check_results=checks)


@dg.asset(key=FIRST_STAGE_KEY, deps=list(VIEW_ASSETS.values()), code_version=FIRST_STAGE_VERSION,
          group_name=MODEL_GROUP, pool="gpu_heavy", kinds={"pytorch", "safetensors"}, owners=["team:morphable"],
          op_tags=k8s_gpu_tags(1),
          description="The tiny preset's KL autoencoder, trained on every dataset's training views; judged by "
                      "held-out reconstruction PSNR (the paper preset uses the SD VAE of syncdreamer-pretrain.ckpt).",
          check_specs=[dg.AssetCheckSpec("heldout_psnr", asset=FIRST_STAGE_KEY,
                                         description="decode(encode(x)) PSNR on every dataset's held-out views "
                                                     "meets that dataset's bar (FaceScape 25 dB, THuman 21 dB)")])
def first_stage(context: dg.AssetExecutionContext, settings: SettingsResource,
                config: FirstStageAssetConfig) -> dg.MaterializeResult:
    from pipelines.first_stage import judge_heldout_psnr

    result = run_gpu_task(context, "first_stage", config.model_dump(), settings.settings_file)
    psnr = result.metadata["psnr_heldout"]
    passed, table = judge_heldout_psnr(psnr.value if hasattr(psnr, "value") else psnr, tuple(config.datasets))
    return _with_check(result, [dg.AssetCheckResult(check_name="heldout_psnr", passed=passed,
                                                    metadata={"per_dataset": dg.MetadataValue.json(table)})])


def inputs_current(settings, dataset: str, checkpoint: str | None) -> dg.AssetCheckResult:
    """Passes while every view store the checkpoint was trained on has the content it had then; fails (WARN) with
    the changed subjects, and when the checkpoint records no training views at all (nothing can be vouched for)."""
    from pathlib import Path

    from storage.errors import DataError
    from storage.jsonfile import read_json
    from storage.views import ViewStore, store_path

    if checkpoint is None:
        return dg.AssetCheckResult(passed=False, metadata={"reason": "no checkpoint yet"})
    config = read_json(Path(checkpoint) / "config.json", "the checkpoint's configuration")
    trained_on = config.get("views")
    if not trained_on:
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN,
                                   metadata={"reason": "the checkpoint records no training views, so whether they "
                                                       "changed cannot be checked"})
    stale = {}
    for subject, digest in trained_on.items():
        try:
            now = ViewStore.open(store_path(settings.storage_root, dataset, subject)).manifest["content_hash"]
        except DataError:
            now = "missing"
        if now != digest:
            stale[subject] = f"{digest[:8]} -> {now[:8]}"
    return dg.AssetCheckResult(passed=not stale, severity=dg.AssetCheckSeverity.WARN,
                               metadata={"subjects_trained_on": len(trained_on),
                                         "changed_since_training": dg.MetadataValue.json(stale)})


def _checkpoint_asset(dataset: str) -> tuple[dg.AssetsDefinition, dg.AssetChecksDefinition]:
    key = dg.AssetKey([dataset, "checkpoint"])

    @dg.asset(key=key, deps=[VIEW_ASSETS[dataset], FIRST_STAGE_KEY], code_version=TRAIN_VERSION,
              op_tags=k8s_gpu_tags(int(os.environ.get("MORPHABLE_TRAIN_GPUS", "1"))),
              group_name=MODEL_GROUP, pool="gpu_heavy", kinds={"pytorch", "safetensors"}, owners=["team:morphable"],
              description=f"Morphable Diffusion trained on the {dataset} training views (tiny: from scratch on the "
                          f"first stage; paper: from syncdreamer-pretrain.ckpt). Data version = weights hash.")
    def checkpoint(context: dg.AssetExecutionContext, settings: SettingsResource,
                   config: TrainingAssetConfig) -> dg.MaterializeResult:
        s = settings.load()
        cfg = {**config.model_dump(exclude={"gpus"}), "dataset": dataset, "name": f"{config.preset}-{dataset}"}
        if config.preset == "paper":
            cfg["init"] = str(s.syncdreamer_checkpoint) if s.syncdreamer_checkpoint else None
        else:
            fs = latest_uri(context, FIRST_STAGE_KEY)
            if fs is None:
                raise dg.Failure(f"materialize {FIRST_STAGE_KEY.to_user_string()} first (the tiny preset's VAE)")
            cfg["first_stage"] = fs
        return run_gpu_task(context, "train", cfg, settings.settings_file, gpus=config.gpus)

    @dg.asset_check(asset=key, name="training_inputs_current", additional_deps=[VIEW_ASSETS[dataset]],
                    description="Passes while every view store the checkpoint was trained on is unchanged; a "
                                "failure lists the subjects to retrain on (retraining stays an explicit action).")
    def training_inputs_current(context: dg.AssetCheckExecutionContext,
                                settings: SettingsResource) -> dg.AssetCheckResult:
        return inputs_current(settings.load(), dataset, latest_uri(context, key))

    return checkpoint, training_inputs_current


facescape_checkpoint, facescape_inputs_check = _checkpoint_asset("facescape")
thuman_checkpoint, thuman_inputs_check = _checkpoint_asset("thuman")
CHECKPOINT_ASSETS = {"facescape": facescape_checkpoint, "thuman": thuman_checkpoint}
TRAINING_CHECKS = [facescape_inputs_check, thuman_inputs_check]
