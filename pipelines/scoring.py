"""Stage `metrics`: score one evaluation set and its conditioning ablations' sets (pipelines/evaluate.py), plot the
per-subject PSNR, and judge the tables (no NaN where a metric applies, values in range). What the metrics asset
records comes back as one typed outcome."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines import catalog
from pipelines.metadata import Markdown, Metadata, JsonValue, TableColumns
from pipelines.protocols import get_protocol
from pipelines.records import EvalSetRecord, MetricsRecord
from storage.hashing import hash_dataframe

PSNR_CAP = 10 * math.log10(255.0 ** 2 / 1e-12)  # model.metrics.image.psnr of identical images
RANGES = {"psnr": (0.0, PSNR_CAP), "masked_psnr": (0.0, PSNR_CAP), "ssim": (-1.0, 1.0), "lpips": (0.0, 2.0),
          "silhouette_iou": (0.0, 1.0), "pck": (0.0, 1.0), "reid": (0.0, 1.0), "fid": (0.0, float("inf"))}
#: scored per view and required finite in every view; FID, PCK and Re-ID are required finite per protocol (PCK and
#: Re-ID are undefined for a view whose ground truth shows no face, but a face protocol must score some views)
PER_VIEW_REQUIRED = ("psnr", "ssim", "masked_psnr", "silhouette_iou", "lpips")
FACE_METRICS = ("pck", "reid")
SUMMARY_COLUMNS = ["experiment", "method", "psnr", "ssim", "lpips", "fid", "pck", "reid", "masked_psnr",
                   "silhouette_iou", "iou_target_mesh", "iou_input_mesh", "iou_condition_mesh", "views"]


@dataclass(frozen=True)
class Judgement:
    """One check of the tables: its name, whether it passed, what it found."""

    name: str
    passed: bool
    info: Metadata


@dataclass
class MetricsOutcome:
    record: MetricsRecord
    data_version: str
    metadata: Metadata
    judgements: list[Judgement] = field(default_factory=list)


def ablation_label(experiment: str, ablation: str) -> str:
    """How an ablation's row is named in the tables: `<experiment>:<ablation>`."""
    return f"{experiment}:{ablation}"


def applicable_metrics(protocol: str, missing: str) -> tuple[list[str], list[str]]:
    """(per-view columns, per-protocol columns) that must be finite for this protocol: face metrics (PCK on body
    keypoints) only where the protocol's dataset scores them (catalog); metrics whose weight or model files are
    missing (named in `missing`) excluded."""
    absent = set(missing.split(","))
    per_view = [c for c in PER_VIEW_REQUIRED if c not in absent]
    spec = catalog.dataset(get_protocol(protocol).dataset)
    judged = FACE_METRICS if spec.face_metrics else ("pck",) if spec.body_keypoints else ()
    aggregate = [c for c in ("fid",) + judged if c not in absent]
    return per_view, aggregate


def judge_tables(protocol: str, per_protocol: pd.DataFrame, per_view: pd.DataFrame) -> list[Judgement]:
    """`no_nan` (every applicable metric finite) and `value_ranges` (every value within its metric's range)."""
    view_cols, protocol_cols = applicable_metrics(protocol, str(per_protocol["missing_metrics"].iloc[0]))
    # PCK / Re-ID are defined on views whose ground truth shows a detectable face; a protocol whose every ground
    # truth shows none (`<metric>_views` = 0, e.g. one held-out pair) has nothing to judge, which is reported
    # (body PCK is scored in every view: nothing is unjudged there)
    face = catalog.dataset(get_protocol(protocol).dataset).face_metrics
    unjudged = [c for c in FACE_METRICS if face
                and f"{c}_views" in per_protocol and int(per_protocol[f"{c}_views"].iloc[0]) == 0]
    nan_cols = [c for c in view_cols if c in per_view and per_view[c].isna().any()] + \
        [c for c in protocol_cols if per_protocol[c].isna().any() and c not in unjudged]
    out_of_range = {}
    for c, (lo, hi) in RANGES.items():
        vals = per_view[c] if c in per_view else per_protocol[c]
        v = vals.dropna().to_numpy(np.float64)
        if len(v) and ((v < lo - 1e-9) | (v > hi + 1e-9)).any():
            out_of_range[c] = [float(v.min()), float(v.max())]
    return [Judgement("no_nan", not nan_cols, {"columns_with_nan": JsonValue(nan_cols),
                                               "checked_per_view": JsonValue(view_cols),
                                               "checked_per_protocol": JsonValue(protocol_cols),
                                               "no_ground_truth_face": JsonValue(unjudged)}),
            Judgement("value_ranges", not out_of_range, {"out_of_range": JsonValue(out_of_range)})]


def _plain_row(row) -> dict:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.to_dict().items()}


def score_evaluation(settings, experiment: str, dataset: str, topology: str, eval_set: EvalSetRecord,
                     log=print) -> MetricsOutcome:
    """The metric tables of an evaluation set and of each of its ablations' sets (same weights, one conditioning
    branch changed), added to the history; the outcome's data version is the per-protocol table's hash."""
    from pipelines.evaluate import evaluate_set, load_metric_models
    from pipelines.plots import distributions
    from pipelines.reports import markdown_table
    from storage.thumbnails import markdown_png_file

    protocol = eval_set.protocol
    models = load_metric_models(settings)  # (LPIPS / FID weights: read once for the set and its ablations)
    ev = evaluate_set(settings, eval_set.eval_set, models, log=log, experiment=experiment)
    per_protocol, per_view = ev.tables["per_protocol"], ev.tables["per_view"]
    plot = distributions({sub: g["psnr"].to_numpy() for sub, g in per_view.groupby("subject")},
                         Path(ev.paths["per_view"]).parent / "psnr_per_subject.png",
                         f"{protocol} / {experiment}: PSNR per subject")
    ablation_tables = {
        ablation: evaluate_set(settings, path, models, log=log,
                               experiment=ablation_label(experiment, ablation)).tables["per_protocol"]
        for ablation, path in eval_set.ablation_sets.items()}
    row = per_protocol.iloc[0]
    record = MetricsRecord(experiment=experiment, protocol=protocol, dataset=dataset, topology=topology,
                           kind=eval_set.kind, tables=str(Path(ev.paths["per_protocol"]).parent),
                           eval_set=eval_set.eval_set, row=_plain_row(row),
                           ablation_rows={a: _plain_row(t.iloc[0]) for a, t in ablation_tables.items()})
    summary = pd.concat([per_protocol, *ablation_tables.values()], ignore_index=True)
    metadata: Metadata = {
        "dagster/uri": record.tables, "dagster/row_count": len(per_view),
        "dagster/column_schema": TableColumns(dict(per_view.dtypes.astype(str).items())),
        "summary": Markdown(markdown_table(summary, SUMMARY_COLUMNS)),
        "per_subject": Markdown(markdown_table(ev.tables["per_subject"],
                                               ["subject", "psnr", "ssim", "lpips", "pck", "reid", "views"])),
        "psnr_per_subject": Markdown(markdown_png_file(plot, "PSNR per subject")),
        "checkpoint_hash": str(row["checkpoint_hash"]), "topology": topology,
        **{m: float(row[m]) for m in ("psnr", "ssim", "masked_psnr", "silhouette_iou")},
        "missing_metrics": str(row["missing_metrics"]) or "none",
        "seconds_per_view": JsonValue({k: round(v, 4) for k, v in ev.seconds_per_view.items()})}
    return MetricsOutcome(record, hash_dataframe(per_protocol.drop(columns=["eval_set"])), metadata,
                          judge_tables(protocol, per_protocol, per_view))
