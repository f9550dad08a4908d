"""Evaluation assets: a generated evaluation set per protocol (GPU process, pool `gpu_heavy`), regenerated
automatically when its checkpoint's data version changes; the demo's two baselines."""
import math
import os

import dagster as dg

from assets_defs.gpu_steps import k8s_gpu_tags, latest_uri, run_gpu_task
from assets_defs.resources import SettingsResource
from assets_defs.run_config import dagster_config
from assets_defs.training import CHECKPOINT_ASSETS
from assets_defs.views import VIEW_ASSETS
from model.diffusion.ddim import DDIMConfig
from pipelines.protocols import PROTOCOLS

EVAL_GROUP = "evaluation"
EVAL_SET_VERSION = "eval-set-1"
#: eager on a *new checkpoint* (its data version = weights hash); missing upstream partitions do not block
ON_NEW_CHECKPOINT = dg.AutomationCondition.eager().replace("newly_updated",
                                                           dg.AutomationCondition.data_version_changed())
#: weekly regeneration (cron configurable with MORPHABLE_EVAL_CRON, UTC); never while a run of it is in progress
EVAL_CRON = os.environ.get("MORPHABLE_EVAL_CRON", "0 4 * * 1")
WEEKLY = (dg.AutomationCondition.cron_tick_passed(EVAL_CRON, cron_timezone="UTC")
          & ~dg.AutomationCondition.in_progress() & ~dg.AutomationCondition.any_deps_in_progress()
          & ~dg.AutomationCondition.any_deps_missing()).with_label(f"weekly ({EVAL_CRON} UTC)")
EVAL_SET_AUTOMATION = (ON_NEW_CHECKPOINT | WEEKLY).with_label("new checkpoint or weekly")


#: run config of the evaluation sets: the sampler (model.diffusion.ddim.DDIMConfig, released defaults)
EvalSetAssetConfig = dagster_config(DDIMConfig, "EvalSetAssetConfig")


def generated_key(protocol: str) -> dg.AssetKey:
    return dg.AssetKey(["evaluation", protocol, "generated"])


BASELINES_KEY = dg.AssetKey(["evaluation", "demo", "baselines"])


def _eval_set_asset(protocol: str) -> dg.AssetsDefinition:
    proto = PROTOCOLS[protocol]
    ckpt = CHECKPOINT_ASSETS[proto.dataset]

    @dg.asset(key=generated_key(protocol), deps=[ckpt], code_version=EVAL_SET_VERSION, group_name=EVAL_GROUP,
              pool="gpu_heavy", kinds={"pytorch", "numpy"}, owners=["team:morphable"], op_tags=k8s_gpu_tags(1),
              automation_condition=EVAL_SET_AUTOMATION,
              description=f"Generated views of protocol `{protocol}` ({proto.description}) with the latest "
                          f"{proto.dataset} checkpoint, beside their ground truth.")
    def eval_set(context: dg.AssetExecutionContext, settings: SettingsResource,
                 config: EvalSetAssetConfig) -> dg.MaterializeResult:
        checkpoint = latest_uri(context, ckpt.key)
        if checkpoint is None:
            raise dg.Failure(f"no checkpoint yet: materialize {ckpt.key.to_user_string()} first")
        return run_gpu_task(context, "eval_set", {"protocol": protocol, "checkpoint": checkpoint, "method": "model",
                                                  "sampler": config.model_dump()}, settings.settings_file)

    return eval_set


@dg.asset(key=BASELINES_KEY, deps=[VIEW_ASSETS["facescape"], CHECKPOINT_ASSETS["facescape"]],
          code_version=EVAL_SET_VERSION, group_name=EVAL_GROUP, kinds={"numpy"}, owners=["team:morphable"],
          automation_condition=ON_NEW_CHECKPOINT,
          description="The demo protocol's two baselines at the checkpoint's resolution: the input view copied to "
                      "every target, and the mean training image.")
def demo_baselines(context: dg.AssetExecutionContext, settings: SettingsResource) -> dg.MaterializeResult:
    import json
    from pathlib import Path

    from pipelines.evaluation_sets import generate_eval_set

    s = settings.load()
    ckpt = latest_uri(context, CHECKPOINT_ASSETS["facescape"].key)
    size = json.loads((Path(ckpt) / "config.json").read_text())["model"]["image_size"] if ckpt else 64
    results = {m: generate_eval_set(s, "demo", method=m, image_size=size, log=context.log.debug)
               for m in ("copy_input", "mean_train")}
    return dg.MaterializeResult(
        data_version=dg.DataVersion(f"baselines{size}-" + "-".join(r.path.name for r in results.values())),
        metadata={"dagster/uri": str(results["copy_input"].path.parent), "image_size": size,
                  **{f"{m}_path": dg.MetadataValue.path(str(r.path)) for m, r in results.items()},
                  "views": results["copy_input"].views})


EVAL_SET_ASSETS = {name: _eval_set_asset(name) for name in PROTOCOLS}


METRICS_VERSION = "metrics-1"
SUMMARY_KEY = dg.AssetKey(["evaluation", "summary"])
PSNR_CAP = 10 * math.log10(255.0 ** 2 / 1e-12)  # model.metrics.image.psnr of identical images
RANGES = {"psnr": (0.0, PSNR_CAP), "masked_psnr": (0.0, PSNR_CAP), "ssim": (-1.0, 1.0), "lpips": (0.0, 2.0),
          "silhouette_iou": (0.0, 1.0), "pck": (0.0, 1.0), "reid": (0.0, 1.0), "fid": (0.0, float("inf"))}


def metrics_key(protocol: str) -> dg.AssetKey:
    return dg.AssetKey(["evaluation", protocol, "metrics"])


#: scored per view and required finite in every view; FID, PCK and Re-ID are required finite per protocol (PCK and
#: Re-ID are undefined for a view whose ground truth shows no face, but a face protocol must score some views)
PER_VIEW_REQUIRED = ("psnr", "ssim", "masked_psnr", "silhouette_iou", "lpips")
FACE_METRICS = ("pck", "reid")


def applicable_metrics(protocol: str, missing: str) -> tuple[list[str], list[str]]:
    """(per-view columns, per-protocol columns) that must be finite for this protocol: face metrics only on
    FaceScape protocols; metrics whose weight files are missing (named in `missing`) excluded."""
    absent = set(missing.split(","))
    per_view = [c for c in PER_VIEW_REQUIRED if c not in absent]
    aggregate = [c for c in ("fid",) + (FACE_METRICS if PROTOCOLS[protocol].dataset == "facescape" else ())
                 if c not in absent]
    return per_view, aggregate


def _metric_checks(protocol: str, per_protocol, per_view) -> list[dg.AssetCheckResult]:
    import numpy as np

    view_cols, protocol_cols = applicable_metrics(protocol, str(per_protocol["missing_metrics"].iloc[0]))
    nan_cols = [c for c in view_cols if c in per_view and per_view[c].isna().any()] + \
        [c for c in protocol_cols if per_protocol[c].isna().any()]
    out_of_range = {}
    for c, (lo, hi) in RANGES.items():
        vals = per_view[c] if c in per_view else per_protocol[c]
        v = vals.dropna().to_numpy(np.float64)
        if len(v) and ((v < lo - 1e-9) | (v > hi + 1e-9)).any():
            out_of_range[c] = [float(v.min()), float(v.max())]
    return [dg.AssetCheckResult(check_name="no_nan", passed=not nan_cols,
                                metadata={"columns_with_nan": dg.MetadataValue.json(nan_cols),
                                          "checked_per_view": dg.MetadataValue.json(view_cols),
                                          "checked_per_protocol": dg.MetadataValue.json(protocol_cols)}),
            dg.AssetCheckResult(check_name="value_ranges", passed=not out_of_range,
                                metadata={"out_of_range": dg.MetadataValue.json(out_of_range)})]


def _metrics_asset(protocol: str) -> dg.AssetsDefinition:
    key = metrics_key(protocol)
    deps = [generated_key(protocol)] + ([BASELINES_KEY] if protocol == "demo" else [])

    @dg.asset(key=key, deps=deps, code_version=METRICS_VERSION, group_name=EVAL_GROUP, kinds={"pandas", "parquet"},
              owners=["team:morphable"], automation_condition=EVAL_SET_AUTOMATION,
              description=f"PSNR, SSIM, LPIPS, FID, PCK@0.2, Re-ID, masked PSNR and silhouette IoU of protocol "
                          f"`{protocol}` (per view, per subject, per protocol parquet tables)"
                          + ("; with the two baselines' rows." if protocol == "demo" else "."),
              check_specs=[dg.AssetCheckSpec(n, asset=key) for n in ("no_nan", "value_ranges")])
    def metrics(context: dg.AssetExecutionContext, settings: SettingsResource) -> dg.MaterializeResult:
        import hashlib
        from pathlib import Path

        import pandas as pd

        from pipelines.evaluate import evaluate_set, load_metric_models
        from pipelines.plots import distributions
        from pipelines.reports import markdown_table
        from storage.thumbnails import markdown_png_file

        s = settings.load()
        sets = [latest_uri(context, generated_key(protocol))]
        if protocol == "demo":
            base = context.instance.get_latest_materialization_event(BASELINES_KEY)
            meta = base.asset_materialization.metadata if base else {}
            sets += [str(meta[k].value) for k in ("copy_input_path", "mean_train_path") if k in meta]
        if sets[0] is None:
            raise dg.Failure(f"no evaluation set yet: materialize {generated_key(protocol).to_user_string()} first")
        models = load_metric_models(s)
        evs = [evaluate_set(s, p, models, log=context.log.info) for p in sets]
        per_protocol = pd.concat([e.tables["per_protocol"] for e in evs], ignore_index=True)
        per_view = pd.concat([e.tables["per_view"] for e in evs], ignore_index=True)
        model_views = evs[0].tables["per_view"]
        plot = distributions({sub: g["psnr"].to_numpy() for sub, g in model_views.groupby("subject")},
                             Path(evs[0].paths["per_view"]).parent / "psnr_per_subject.png",
                             f"{protocol}: PSNR per subject")
        digest = hashlib.sha256(pd.util.hash_pandas_object(per_protocol.drop(columns=["eval_set"]),
                                                           index=False).values.tobytes()).hexdigest()[:16]
        cols = ["method", "psnr", "ssim", "lpips", "fid", "pck", "reid", "masked_psnr", "silhouette_iou", "views"]
        row = per_protocol.iloc[0]
        return dg.MaterializeResult(
            data_version=dg.DataVersion(digest),
            metadata={"dagster/uri": str(evs[0].paths["per_protocol"].parent),
                      "dagster/row_count": len(per_view),
                      "dagster/column_schema": dg.TableSchema(columns=[
                          dg.TableColumn(c, str(t)) for c, t in per_view.dtypes.astype(str).items()]),
                      "summary": dg.MetadataValue.md(markdown_table(per_protocol, cols)),
                      "per_subject": dg.MetadataValue.md(markdown_table(evs[0].tables["per_subject"],
                                                                        ["subject", "psnr", "ssim", "lpips", "pck",
                                                                         "reid", "views"])),
                      "psnr_per_subject": dg.MetadataValue.md(markdown_png_file(plot, "PSNR per subject")),
                      "checkpoint_hash": str(row["checkpoint_hash"]),
                      **{m: float(row[m]) for m in ("psnr", "ssim", "masked_psnr", "silhouette_iou")},
                      "missing_metrics": str(row["missing_metrics"]) or "none",
                      "seconds_per_view": dg.MetadataValue.json({k: round(v, 4) for k, v in
                                                                 evs[0].seconds_per_view.items()})},
            check_results=_metric_checks(protocol, per_protocol, per_view))

    return metrics


METRIC_ASSETS = {name: _metrics_asset(name) for name in PROTOCOLS}


@dg.asset(key=SUMMARY_KEY, deps=[a.key for a in METRIC_ASSETS.values()], code_version=METRICS_VERSION,
          group_name=EVAL_GROUP, kinds={"pandas", "parquet"}, owners=["team:morphable"],
          automation_condition=dg.AutomationCondition.eager(),
          description="Every protocol's latest metrics and the history across checkpoints, with plots.")
def evaluation_summary(context: dg.AssetExecutionContext, settings: SettingsResource) -> dg.MaterializeResult:
    import hashlib

    import pandas as pd

    from pipelines.plots import metric_history
    from pipelines.reports import markdown_table
    from storage.metric_tables import read_history, write_summary
    from storage.thumbnails import markdown_png_file

    s = settings.load()
    hist = read_history(s.storage_root)
    if hist.empty:
        raise dg.Failure("no metrics yet: materialize the evaluation/<protocol>/metrics assets first")
    latest = hist.groupby(["protocol", "method"], sort=True).tail(1).sort_values(["protocol", "method"])
    series = {f"{protocol}/{method}": list(zip(g["checkpoint_hash"].str[:6], g["psnr"]))
              for (protocol, method), g in hist.groupby(["protocol", "method"], sort=True)}
    plot = metric_history(series, s.storage_root / "metrics" / "psnr_history.png", "PSNR per checkpoint")
    summary_path = write_summary(s.storage_root, latest)
    cols = ["protocol", "method", "checkpoint_hash", "psnr", "ssim", "lpips", "fid", "pck", "reid", "masked_psnr",
            "silhouette_iou", "views"]
    digest = hashlib.sha256(pd.util.hash_pandas_object(latest.drop(columns=["eval_set"]), index=False)
                            .values.tobytes()).hexdigest()[:16]
    return dg.MaterializeResult(
        data_version=dg.DataVersion(digest),
        metadata={"dagster/uri": str(summary_path), "dagster/row_count": len(latest),
                  "latest": dg.MetadataValue.md(markdown_table(latest, cols)),
                  "history_rows": len(hist),
                  "psnr_history": dg.MetadataValue.md(markdown_png_file(plot, "PSNR history"))})
