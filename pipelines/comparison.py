"""The paper-style comparison across experiments: one row per experiment (and its checkpoint), one column group per
protocol, from the per-protocol metric rows each evaluation wrote."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

#: the columns of the comparison, per protocol (higher is better except LPIPS and FID)
COMPARED = ("psnr", "ssim", "lpips", "fid", "pck", "reid", "masked_psnr", "silhouette_iou", "iou_target_mesh",
            "iou_input_mesh")


def comparison_table(per_protocol_rows: list[dict]) -> pd.DataFrame:
    """Rows: (dataset, experiment, kind, checkpoint hash); columns: `<protocol>/<metric>` for every protocol."""
    if not per_protocol_rows:
        raise ValueError("no metric rows to compare: materialize the evaluation metrics first")
    long = pd.DataFrame(per_protocol_rows)
    index = ["dataset", "experiment", "kind", "checkpoint_hash"]
    for metric in COMPARED:  # a protocol that does not measure a metric still gets its (empty) column
        if metric not in long:
            long[metric] = float("nan")
    # rows are only the (dataset, experiment, kind, hash) combinations that exist (a pivot_table with dropna=False
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


def sample_sheet(references: list[dict], path: str | Path, views: int = 8,
                 protocols: tuple[str, ...] = ("facescape_novel_view", "facescape_novel_expression"),
                 kinds: tuple[str, ...] = ("trained", "published")) -> Path | None:
    """One picture of what the models do on held-out identities: per (experiment, protocol), the first pair's input
    and `views` generated views above the ground truth (the left cell of the second row is left blank). None when
    no reference has such a set. Written atomically."""
    import numpy as np
    from PIL import Image

    from storage.atomic import atomic_save
    from storage.eval_sets import EvalSet
    from storage.thumbnails import contact_sheet

    tiles: list[np.ndarray] = []
    chosen = sorted((r for r in references if r.get("protocol") in protocols and r.get("kind") in kinds
                     and r.get("eval_set")), key=lambda r: (r["experiment"], r["protocol"]))
    for ref in chosen:
        pair = next(EvalSet.open(ref["eval_set"]).pairs())
        a = pair.arrays
        n = min(views, len(a["generated"]))
        blank = np.full_like(a["input"], 255)
        tiles += [a["input"], *a["generated"][:n], *[blank] * (views - n), blank, *a["gt"][:n], *[blank] * (views - n)]
    if not tiles:
        return None
    sheet = contact_sheet(tiles, tile=tiles[0].shape[0], columns=views + 1)
    return atomic_save(path, lambda tmp: Image.fromarray(sheet).save(tmp, format="PNG"))
