"""Evaluation assets, per dataset: what each protocol reads from the view stores (partitioned by protocol), and,
partitioned by experiment x protocol, the generated evaluation set (GPU process, pool `gpu_heavy`; baselines in
process), its metric tables, and the comparison across experiments.

Each partition reads the reference of exactly the upstream partitions it depends on (its experiment's checkpoint,
its protocol's view stores, its own evaluation set): assets_defs/references.py. An evaluation set is regenerated
when its checkpoint's data version or its protocol's view stores change (a re-tracked held-out subject: exactly the
protocols that read it), and weekly; metrics follow their evaluation set; the comparison follows the metrics.
"""
import math

import dagster as dg

from assets_defs.automation import POLICY, evaluation_policy
from assets_defs.gpu_steps import from_pipes_metadata, k8s_gpu_tags, run_gpu_task
from assets_defs.partitions import (BY_EXPERIMENT, BY_PROTOCOL, DATASET_PROTOCOLS, DATASETS, EVALUATION_PARTITIONS,
                                   evaluation_key)
from assets_defs.pools import CPU_POOL, GPU_POOL
from assets_defs.resources import SettingsResource
from assets_defs.training import CHECKPOINT_ASSETS
from assets_defs.views import VIEW_ASSETS

EVAL_GROUP = "evaluation"
PROTOCOL_VIEWS_VERSION = "protocol-views-1"
EVAL_SET_VERSION = "eval-set-3"  # 3: conditioning ablations, mesh silhouettes
#: 3: mesh IoU columns, ablation rows, held-out sample sheet; 4: face metrics judged where a ground-truth face is
METRICS_VERSION = "metrics-4"
COMPARISON_KEY = dg.AssetKey(["evaluation", "comparison"])
PSNR_CAP = 10 * math.log10(255.0 ** 2 / 1e-12)  # model.metrics.image.psnr of identical images
RANGES = {"psnr": (0.0, PSNR_CAP), "masked_psnr": (0.0, PSNR_CAP), "ssim": (-1.0, 1.0), "lpips": (0.0, 2.0),
          "silhouette_iou": (0.0, 1.0), "pck": (0.0, 1.0), "reid": (0.0, 1.0), "fid": (0.0, float("inf"))}
#: scored per view and required finite in every view; FID, PCK and Re-ID are required finite per protocol (PCK and
#: Re-ID are undefined for a view whose ground truth shows no face, but a face protocol must score some views)
PER_VIEW_REQUIRED = ("psnr", "ssim", "masked_psnr", "silhouette_iou", "lpips")
FACE_METRICS = ("pck", "reid")


def generated_key(dataset: str) -> dg.AssetKey:
    return dg.AssetKey(["evaluation", dataset, "generated"])


def metrics_key(dataset: str) -> dg.AssetKey:
    return dg.AssetKey(["evaluation", dataset, "metrics"])


def protocol_views_key(dataset: str) -> dg.AssetKey:
    return dg.AssetKey(["evaluation", dataset, "protocol_views"])


def _protocol_views_asset(dataset: str) -> dg.AssetsDefinition:
    @dg.asset(key=protocol_views_key(dataset),
              partitions_def=dg.StaticPartitionsDefinition(DATASET_PROTOCOLS[dataset]),
              deps=[dg.AssetDep(VIEW_ASSETS[dataset], partition_mapping=dg.AllPartitionMapping())],
              code_version=PROTOCOL_VIEWS_VERSION, group_name=EVAL_GROUP, pool=CPU_POOL, kinds={"zarr"},
              owners=["team:morphable"], io_manager_key="references", automation_condition=POLICY,
              description=f"Which {dataset} view stores a protocol's evaluation reads (its pairs, each store's content "
                          "hash). Data version = their digest: it changes only when a store the protocol reads "
                          "changes, so a re-tracked subject re-evaluates exactly the protocols that use it.")
    def protocol_views(context: dg.AssetExecutionContext, settings: SettingsResource) -> dg.Output:
        import pandas as pd

        from pipelines.protocols import get_protocol, protocol_inputs
        from pipelines.reports import markdown_table

        s = settings.load()
        reads = protocol_inputs(context.partition_key, s.storage_root)
        if not reads.pairs:
            proto = get_protocol(context.partition_key)
            which = "training" if proto.training_subjects else "held-out"
            raise dg.Failure(f"protocol {proto.name}: no evaluation pairs under {s.storage_root}/views/{dataset}: "
                             f"materialize the {which} subjects' views ({dataset}/views) first")
        per_subject = pd.DataFrame([{"subject": sub, "pairs": sum(p.subject == sub for p in reads.pairs),
                                     "target_views": sum(len(p.target_views) for p in reads.pairs
                                                         if p.subject == sub), "store_content_hash": h}
                                    for sub, h in reads.stores.items()])
        ref = {"protocol": reads.protocol, "dataset": dataset, "digest": reads.digest, "stores": reads.stores}
        return dg.Output(ref, data_version=dg.DataVersion(reads.digest), metadata={
            "pairs": len(reads.pairs), "target_views": sum(len(p.target_views) for p in reads.pairs),
            "subjects": dg.MetadataValue.md(markdown_table(per_subject, list(per_subject.columns)))})

    return protocol_views


def _eval_set_asset(dataset: str) -> dg.AssetsDefinition:
    @dg.asset(key=generated_key(dataset), partitions_def=EVALUATION_PARTITIONS[dataset],
              ins={"checkpoint": dg.AssetIn(CHECKPOINT_ASSETS[dataset].key, partition_mapping=BY_EXPERIMENT),
                   "protocol_views": dg.AssetIn(protocol_views_key(dataset), partition_mapping=BY_PROTOCOL)},
              code_version=EVAL_SET_VERSION, group_name=EVAL_GROUP, pool=GPU_POOL, kinds={"pytorch", "numpy"},
              owners=["team:morphable"], op_tags=k8s_gpu_tags(1), io_manager_key="references",
              automation_condition=evaluation_policy(protocol_views_key(dataset)),
              description=f"A {dataset} protocol's generated views, beside their ground truth, with one experiment's "
                          "checkpoint (its sampler settings) or baseline.")
    def eval_set(context: dg.AssetExecutionContext, settings: SettingsResource, checkpoint: dict,
                 protocol_views: dict) -> dg.Output:
        import dataclasses

        from pipelines.experiments import load_experiments
        from pipelines.protocols import ablation_protocol, changed_protocol_inputs

        experiment, protocol = evaluation_key(context.partition_key)
        s = settings.load()
        changed = changed_protocol_inputs(protocol, s.storage_root, protocol_views["stores"])
        if changed:  # a view store was re-rendered after the protocol's views were recorded: the lineage would lie
            raise dg.Failure(f"the view stores of {', '.join(changed)} changed since "
                             f"{protocol_views_key(dataset).to_user_string()}[{protocol}] recorded them: "
                             "materialize that partition again (the automation does), then this set",
                             metadata={"changed_subjects": dg.MetadataValue.json(changed)})
        exp = load_experiments(s.experiments_file).get(experiment)
        if checkpoint.get("kind") == "baseline":  # no network: computed in this process
            from pipelines.worker import run_eval_set

            meta, version = run_eval_set(s, {"protocol": protocol, "method": checkpoint["method"],
                                             "image_size": checkpoint["image_size"]}, context.log.info)
            result = dg.MaterializeResult(metadata=from_pipes_metadata(meta), data_version=dg.DataVersion(version))
        else:
            result = run_gpu_task(context, "eval_set", {"protocol": protocol, "checkpoint": checkpoint["folder"],
                                                        "method": "model", "sampler": dataclasses.asdict(exp.sampler),
                                                        "ablations": list(exp.ablations) if ablation_protocol(protocol) else []},
                                  settings.settings_file)
        meta = {**(result.metadata or {}), "protocol_views": protocol_views["digest"]}
        ref = {"experiment": experiment, "protocol": protocol, "kind": checkpoint.get("kind"),
               "eval_set": str(_plain(meta["dagster/uri"])), "checkpoint_hash": checkpoint["checkpoint_hash"],
               "protocol_views": protocol_views["digest"],
               "ablation_sets": dict(_plain(meta["ablation_sets"])) if "ablation_sets" in meta else {}}
        return dg.Output(ref, metadata=meta, data_version=result.data_version)

    return eval_set


def _plain(value):
    """A metadata value's plain content (path / JSON / text)."""
    return value.value if isinstance(value, dg.MetadataValue) else value


def applicable_metrics(protocol: str, missing: str) -> tuple[list[str], list[str]]:
    """(per-view columns, per-protocol columns) that must be finite for this protocol: face metrics only on
    FaceScape protocols; metrics whose weight files are missing (named in `missing`) excluded."""
    from pipelines.protocols import PROTOCOLS

    absent = set(missing.split(","))
    per_view = [c for c in PER_VIEW_REQUIRED if c not in absent]
    aggregate = [c for c in ("fid",) + (FACE_METRICS if PROTOCOLS[protocol].dataset == "facescape" else ())
                 if c not in absent]
    return per_view, aggregate


def _metric_checks(protocol: str, per_protocol, per_view) -> list[dg.AssetCheckResult]:
    import numpy as np

    view_cols, protocol_cols = applicable_metrics(protocol, str(per_protocol["missing_metrics"].iloc[0]))
    # PCK / Re-ID are defined on views whose ground truth shows a detectable face; a protocol whose every ground
    # truth shows none (`<metric>_views` = 0, e.g. one held-out pair) has nothing to judge, which is reported
    unjudged = [c for c in FACE_METRICS
                if f"{c}_views" in per_protocol and int(per_protocol[f"{c}_views"].iloc[0]) == 0]
    nan_cols = [c for c in view_cols if c in per_view and per_view[c].isna().any()] + \
        [c for c in protocol_cols if per_protocol[c].isna().any() and c not in unjudged]
    out_of_range = {}
    for c, (lo, hi) in RANGES.items():
        vals = per_view[c] if c in per_view else per_protocol[c]
        v = vals.dropna().to_numpy(np.float64)
        if len(v) and ((v < lo - 1e-9) | (v > hi + 1e-9)).any():
            out_of_range[c] = [float(v.min()), float(v.max())]
    return [dg.AssetCheckResult(check_name="no_nan", passed=not nan_cols,
                                metadata={"columns_with_nan": dg.MetadataValue.json(nan_cols),
                                          "checked_per_view": dg.MetadataValue.json(view_cols),
                                          "checked_per_protocol": dg.MetadataValue.json(protocol_cols),
                                          "no_ground_truth_face": dg.MetadataValue.json(unjudged)}),
            dg.AssetCheckResult(check_name="value_ranges", passed=not out_of_range,
                                metadata={"out_of_range": dg.MetadataValue.json(out_of_range)})]


def ablation_label(experiment: str, ablation: str) -> str:
    """How an ablation's row is named in the tables: `<experiment>:<ablation>`."""
    return f"{experiment}:{ablation}"


def _plain_row(row) -> dict:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.to_dict().items()}


def _metrics_asset(dataset: str) -> dg.AssetsDefinition:
    key = metrics_key(dataset)

    @dg.asset(key=key, partitions_def=EVALUATION_PARTITIONS[dataset],
              ins={"eval_set": dg.AssetIn(generated_key(dataset))},
              code_version=METRICS_VERSION, group_name=EVAL_GROUP, pool=CPU_POOL, kinds={"pandas", "parquet"},
              owners=["team:morphable"], io_manager_key="references", automation_condition=POLICY,
              description=f"PSNR, SSIM, LPIPS, FID, PCK@0.2, Re-ID, masked PSNR and silhouette IoU of one {dataset} "
                          "evaluation set (per view, per subject, per protocol parquet tables, labelled with the "
                          "experiment), added to the history.",
              check_specs=[dg.AssetCheckSpec(n, asset=key) for n in ("no_nan", "value_ranges")])
    def metrics(context: dg.AssetExecutionContext, settings: SettingsResource, eval_set: dict):
        import hashlib
        from pathlib import Path

        import pandas as pd

        from pipelines.evaluate import evaluate_set, load_metric_models
        from pipelines.plots import distributions
        from pipelines.reports import markdown_table
        from storage.thumbnails import markdown_png_file

        experiment, protocol = evaluation_key(context.partition_key)
        s = settings.load()
        models = load_metric_models(s)  # (LPIPS / FID weights: read once for the set and its ablations)
        ev = evaluate_set(s, eval_set["eval_set"], models, log=context.log.info, experiment=experiment)
        per_protocol, per_view = ev.tables["per_protocol"], ev.tables["per_view"]
        plot = distributions({sub: g["psnr"].to_numpy() for sub, g in per_view.groupby("subject")},
                             Path(ev.paths["per_view"]).parent / "psnr_per_subject.png",
                             f"{protocol} / {experiment}: PSNR per subject")
        digest = hashlib.sha256(pd.util.hash_pandas_object(per_protocol.drop(columns=["eval_set"]),
                                                           index=False).values.tobytes()).hexdigest()[:16]
        row = per_protocol.iloc[0]
        reference = {"experiment": experiment, "protocol": protocol, "dataset": dataset,
                     "kind": eval_set.get("kind"), "tables": str(Path(ev.paths["per_protocol"]).parent),
                     "eval_set": eval_set["eval_set"], "row": _plain_row(row)}
        ablation_tables = {  # same weights, one conditioning branch changed
            ablation: evaluate_set(s, path, models, log=context.log.info,
                                   experiment=ablation_label(experiment, ablation)).tables["per_protocol"]
            for ablation, path in (eval_set.get("ablation_sets") or {}).items()}
        reference["ablation_rows"] = {a: _plain_row(t.iloc[0]) for a, t in ablation_tables.items()}
        summary = pd.concat([per_protocol, *ablation_tables.values()], ignore_index=True)
        cols = ["experiment", "method", "psnr", "ssim", "lpips", "fid", "pck", "reid", "masked_psnr",
                "silhouette_iou", "iou_target_mesh", "iou_input_mesh", "views"]
        yield dg.Output(reference, data_version=dg.DataVersion(digest), metadata={
            "dagster/uri": reference["tables"], "dagster/row_count": len(per_view),
            "dagster/column_schema": dg.TableSchema(columns=[
                dg.TableColumn(c, str(t)) for c, t in per_view.dtypes.astype(str).items()]),
            "summary": dg.MetadataValue.md(markdown_table(summary, cols)),
            "per_subject": dg.MetadataValue.md(markdown_table(ev.tables["per_subject"],
                                                              ["subject", "psnr", "ssim", "lpips", "pck", "reid",
                                                               "views"])),
            "psnr_per_subject": dg.MetadataValue.md(markdown_png_file(plot, "PSNR per subject")),
            "checkpoint_hash": str(row["checkpoint_hash"]),
            **{m: float(row[m]) for m in ("psnr", "ssim", "masked_psnr", "silhouette_iou")},
            "missing_metrics": str(row["missing_metrics"]) or "none",
            "seconds_per_view": dg.MetadataValue.json({k: round(v, 4) for k, v in ev.seconds_per_view.items()})})
        yield from _metric_checks(protocol, per_protocol, per_view)

    return metrics


PROTOCOL_VIEW_ASSETS = {d: _protocol_views_asset(d) for d in DATASETS}
EVAL_SET_ASSETS = {d: _eval_set_asset(d) for d in DATASETS}
METRIC_ASSETS = {d: _metrics_asset(d) for d in DATASETS}


@dg.asset(key=COMPARISON_KEY, ins={f"{d}_metrics": dg.AssetIn(metrics_key(d)) for d in DATASETS},
          code_version=METRICS_VERSION, group_name=EVAL_GROUP, kinds={"pandas", "parquet"}, owners=["team:morphable"],
          io_manager_key="references",
          automation_condition=POLICY,
          description="The paper-style table across experiments: one row per experiment and checkpoint, each "
                      "protocol's metrics as columns (parquet, markdown, plot); the history keeps every (experiment, "
                      "checkpoint, protocol) row ever evaluated.")
def comparison(context: dg.AssetExecutionContext, settings: SettingsResource, facescape_metrics: dict,
               thuman_metrics: dict) -> dg.Output:
    import hashlib

    import pandas as pd

    from pipelines.comparison import COMPARED, comparison_plot, comparison_table, sample_sheet
    from pipelines.reports import markdown_table
    from storage.metric_tables import read_history, write_comparison
    from storage.thumbnails import markdown_png_file

    s = settings.load()
    refs = list(facescape_metrics.values()) + list(thuman_metrics.values())
    rows = [{**r["row"], "dataset": r["dataset"], "kind": r.get("kind") or "", "experiment": r["experiment"]}
            for r in refs]
    rows += [{**row, "dataset": r["dataset"], "kind": "ablation", "experiment": ablation_label(r["experiment"], a)}
             for r in refs for a, row in (r.get("ablation_rows") or {}).items()]
    table = comparison_table(rows)
    path = write_comparison(s.storage_root, table)
    plot = comparison_plot(rows, s.storage_root / "metrics" / "comparison_masked_psnr.png")
    sheet = sample_sheet(refs, s.storage_root / "metrics" / "heldout_samples.png")
    hist = read_history(s.storage_root)
    digest = hashlib.sha256(pd.util.hash_pandas_object(table, index=False).values.tobytes()).hexdigest()[:16]
    shown = ["experiment", "kind", "checkpoint_hash"] + [c for c in table.columns
                                                         if c.split("/")[-1] in ("masked_psnr", "ssim", "reid",
                                                                                 "silhouette_iou")]
    return dg.Output({"table": str(path), "rows": len(table)}, data_version=dg.DataVersion(digest), metadata={
        "dagster/uri": str(path), "dagster/row_count": len(table),
        "comparison": dg.MetadataValue.md(markdown_table(table, shown)),
        "masked_psnr_per_experiment": dg.MetadataValue.md(markdown_png_file(plot, "masked PSNR per experiment")),
        "history_rows": len(hist), "metrics": dg.MetadataValue.json(list(COMPARED)),
        **({"heldout_samples": dg.MetadataValue.md(markdown_png_file(
            sheet, "held-out identities: input and generated views (upper row), ground truth (lower row), per "
                   "experiment and protocol"))} if sheet else {})})
