"""PNG plots for asset metadata and docs (matplotlib, headless Agg backend), written atomically: a reader (the UI,
a concurrent run) sees the previous PNG or the new one, never half of one."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from storage.atomic import atomic_save


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    atomic_save(path, fig.savefig)
    plt.close(fig)
    return path


def loss_curve(losses: Sequence[float], path: str | Path, title: str = "training loss", smooth: int = 20) -> Path:
    """Raw loss (faint) and its moving average over `smooth` steps, log-scale y."""
    plt = _pyplot()
    path = Path(path)
    y = np.asarray(losses, np.float64)
    fig, ax = plt.subplots(figsize=(5, 3), dpi=100)
    steps = np.arange(1, len(y) + 1)
    ax.plot(steps, y, color="0.75", lw=0.8, label="per step")
    if len(y) >= smooth:
        avg = np.convolve(y, np.ones(smooth) / smooth, mode="valid")
        ax.plot(steps[smooth - 1:], avg, color="C0", lw=1.5, label=f"mean of {smooth}")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    return _save(plt, fig, path)


def metric_history(history: Mapping[str, Sequence[tuple[str, float]]], path: str | Path, title: str) -> Path:
    """One line per series: [(x label, value), ...] in order (e.g. checkpoints over time)."""
    plt = _pyplot()
    path = Path(path)
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    for name, points in history.items():
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name)
    ax.set_title(title)
    ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    ax.legend(fontsize=7)
    return _save(plt, fig, path)


def distributions(values: Mapping[str, Sequence[float]], path: str | Path, title: str) -> Path:
    """Box plot per group (e.g. per-subject PSNR)."""
    plt = _pyplot()
    path = Path(path)
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    names = list(values)
    ax.boxplot([np.asarray(values[n], np.float64) for n in names], tick_labels=names)
    ax.set_title(title)
    ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    return _save(plt, fig, path)
