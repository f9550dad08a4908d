"""The paper-style comparison across experiments: one row per experiment (and its checkpoint), one column group per
protocol, from the per-protocol metric rows each evaluation wrote (`compare`: the comparison stage)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipelines.metadata import JsonValue, Markdown, Metadata
from pipelines.records import ComparisonRecord, MetricsRecord

#: the columns of the comparison, per protocol (higher is better except LPIPS and FID)
COMPARED = ("psnr", "ssim", "lpips", "fid", "pck", "reid", "masked_psnr", "silhouette_iou", "iou_target_mesh",
            "iou_input_mesh", "iou_condition_mesh")


def comparison_table(per_protocol_rows: list[dict]) -> pd.DataFrame:
    """Rows: (dataset, topology, experiment, kind, checkpoint hash); columns: `<protocol>/<metric>` for every
    protocol."""
    if not per_protocol_rows:
        raise ValueError("no metric rows to compare: materialize the evaluation metrics first")
    long = pd.DataFrame(per_protocol_rows)
    index = ["dataset", "topology", "experiment", "kind", "checkpoint_hash"]
    for metric in COMPARED:  # a protocol that does not measure a metric still gets its (empty) column
        if metric not in long:
            long[metric] = float("nan")
    # rows are only the (dataset, topology, experiment, kind, hash) combinations that exist (a pivot_table with dropna=False
    # would form every combination of the index levels)
    wide = long.groupby(index + ["protocol"], sort=True, dropna=False)[list(COMPARED)].first().unstack("protocol")
    wide.columns = [f"{protocol}/{metric}" for metric, protocol in wide.columns]
    order = sorted(wide.columns, key=lambda c: (c.split("/")[0], COMPARED.index(c.split("/")[1])))
    return wide[order].reset_index().sort_values(["dataset", "experiment"]).reset_index(drop=True)


def comparison_plot(per_protocol_rows: list[dict], path: str | Path, metric: str = "masked_psnr") -> Path:
    """One panel per protocol: `metric` per experiment (bars), written atomically."""
    import numpy as np

    from pipelines.plots import _pyplot, _save

    plt = _pyplot()
    df = pd.DataFrame(per_protocol_rows)
    protocols = sorted(df["protocol"].unique())
    fig, axes = plt.subplots(1, len(protocols), figsize=(3.2 * len(protocols), 3.2), dpi=100, squeeze=False)
    for ax, protocol in zip(axes[0], protocols):
        sub = df[df["protocol"] == protocol].sort_values("experiment")
        ax.bar(np.arange(len(sub)), sub[metric].to_numpy(np.float64), color="C0")
        ax.set_xticks(np.arange(len(sub)), sub["experiment"], rotation=40, ha="right", fontsize=7)
        ax.set_title(protocol, fontsize=9)
    axes[0][0].set_ylabel(metric)
    return _save(plt, fig, Path(path))


def sample_sheet(records: list[MetricsRecord], path: str | Path, views: int = 8,
                 protocols: tuple[str, ...] = ("facescape_novel_view", "facescape_novel_expression",
                                               "thuman_novel_view", "thuman_novel_pose"),
                 kinds: tuple[str, ...] = ("trained", "published")) -> Path | None:
    """One picture of what the models do on held-out identities and persons: per (experiment, protocol), the first
    pair's input and `views` generated views above the ground truth (the left cell of the second row is left
    blank). None when no record has such a set. Written atomically."""
    import numpy as np
    from PIL import Image

    from storage.atomic import atomic_save
    from storage.eval_sets import EvalSet
    from storage.thumbnails import contact_sheet

    tiles: list[np.ndarray] = []
    chosen = sorted((r for r in records if r.protocol in protocols and r.kind in kinds and r.eval_set),
                    key=lambda r: (r.experiment, r.protocol))
    for rec in chosen:
        pair = next(EvalSet.open(rec.eval_set).pairs())
        a = pair.arrays
        n = min(views, len(a["generated"]))
        blank = np.full_like(a["input"], 255)
        tiles += [a["input"], *a["generated"][:n], *[blank] * (views - n), blank, *a["gt"][:n], *[blank] * (views - n)]
    if not tiles:
        return None
    sheet = contact_sheet(tiles, tile=tiles[0].shape[0], columns=views + 1)
    return atomic_save(path, lambda tmp: Image.fromarray(sheet).save(tmp, format="PNG"))


@dataclass
class ComparisonOutcome:
    record: ComparisonRecord
    data_version: str
    metadata: Metadata


def comparison_rows(records: list[MetricsRecord]) -> list[dict]:
    """Every evaluation's per-protocol row and its ablations' rows (`<experiment>:<ablation>`, kind "ablation"),
    labelled with their dataset, topology and experiment."""
    from pipelines.scoring import ablation_label

    rows = [{**r.row, "dataset": r.dataset, "topology": r.topology, "kind": r.kind or "", "experiment": r.experiment}
            for r in records]
    rows += [{**row, "dataset": r.dataset, "topology": r.topology, "kind": "ablation",
              "experiment": ablation_label(r.experiment, a)} for r in records for a, row in r.ablation_rows.items()]
    return rows


def compare(settings, records: list[MetricsRecord], animations: list | None = None) -> ComparisonOutcome:
    """The comparison table (parquet + markdown), its plot and the held-out sample sheet, from every metric record;
    and the animation table (metrics/animation.parquet) from the animation records there are."""
    from pipelines.reports import markdown_table
    from storage.hashing import hash_dataframe
    from storage.metric_tables import read_history, write_comparison
    from storage.thumbnails import markdown_png_file

    rows = comparison_rows(records)
    table = comparison_table(rows)
    path = write_comparison(settings.storage_root, table)
    plot = comparison_plot(rows, settings.storage_root / "metrics" / "comparison_masked_psnr.png")
    sheet = sample_sheet(records, settings.storage_root / "metrics" / "heldout_samples.png")
    shown = ["experiment", "topology", "kind", "checkpoint_hash"] + [
        c for c in table.columns if c.split("/")[-1] in ("masked_psnr", "ssim", "reid", "silhouette_iou")]
    metadata: Metadata = {
        "dagster/uri": str(path), "dagster/row_count": len(table),
        "comparison": Markdown(markdown_table(table, shown)),
        "masked_psnr_per_experiment": Markdown(markdown_png_file(plot, "masked PSNR per experiment")),
        "history_rows": len(read_history(settings.storage_root)), "metrics": JsonValue(list(COMPARED))}
    if animations:
        from pipelines.animations import SHOWN, comparison_rows as animation_rows
        from storage.atomic import atomic_save

        anim = pd.DataFrame(animation_rows(animations)).sort_values(["dataset", "experiment", "sequence", "sampler"])
        anim_path = atomic_save(settings.storage_root / "metrics" / "animation.parquet",
                                lambda tmp: anim.to_parquet(tmp, index=False))
        metadata["animation"] = Markdown(markdown_table(anim, ["experiment", "sequence", "sampler", *SHOWN]))
        metadata["animation_table"] = str(anim_path)
    elif (settings.storage_root / "metrics" / "animation.parquet").is_file():  # (no animation any more)
        (settings.storage_root / "metrics" / "animation.parquet").unlink()
    if sheet:
        metadata["heldout_samples"] = Markdown(markdown_png_file(
            sheet, "held-out identities: input and generated views (upper row), ground truth (lower row), per "
                   "experiment and protocol"))
    version = hash_dataframe(table)
    if animations:  # (without animations, the version stays the table's alone, as before)
        from storage.hashing import hash_json

        version = hash_json([version, hash_dataframe(anim.reset_index(drop=True))], 32)
    return ComparisonOutcome(ComparisonRecord(str(path), len(table)), version, metadata)
