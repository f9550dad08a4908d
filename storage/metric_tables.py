"""Metric tables (parquet) per evaluated set, and the history across checkpoints.

    <root>/metrics/<protocol>/<eval set folder name>/per_view.parquet, per_subject.parquet, per_protocol.parquet
    <root>/metrics/history.parquet    one row per (protocol, experiment, method, checkpoint, inputs) ever evaluated
    <root>/metrics/comparison.parquet the latest row per (experiment, protocol): the paper-style comparison
Every file is written to a temporary sibling and renamed, so a crash never leaves a half-written table; the history
(updated by every evaluation, possibly from several processes at once) is read, merged and replaced under its
writer lock, so no concurrent update loses a row.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from storage.atomic import atomic_save, writer_lock

TABLES = ("per_view", "per_subject", "per_protocol")
HISTORY_KEY = ["protocol", "experiment", "method", "checkpoint_hash", "eval_set"]


def tables_dir(root: str | Path, protocol: str, eval_set_name: str) -> Path:
    return Path(root) / "metrics" / protocol / eval_set_name


def _atomic_parquet(df: pd.DataFrame, path: Path) -> None:
    atomic_save(path, lambda tmp: df.to_parquet(tmp, index=False))


def write_tables(folder: Path, tables: dict[str, pd.DataFrame]) -> dict[str, Path]:
    out = {}
    for name in TABLES:
        out[name] = folder / f"{name}.parquet"
        _atomic_parquet(tables[name].reset_index(drop=True), out[name])
    return out


def read_tables(folder: Path) -> dict[str, pd.DataFrame]:
    return {name: pd.read_parquet(folder / f"{name}.parquet") for name in TABLES}


def update_history(root: str | Path, rows: pd.DataFrame) -> pd.DataFrame:
    """Insert or replace `rows` (per-protocol rows) in the history table; returns the whole history."""
    path = Path(root) / "metrics" / "history.parquet"
    if "experiment" not in rows:  # scored outside an experiment (`morphable evaluate --checkpoint DIR`)
        rows = rows.assign(experiment="")
    missing = [k for k in HISTORY_KEY if k not in rows]
    if missing:
        raise ValueError(f"metric rows for {path} lack the key column(s) {missing}")
    with writer_lock(path):
        old = pd.read_parquet(path) if path.is_file() else pd.DataFrame(columns=rows.columns)
        if len(old) and "experiment" not in old:  # rows from before experiments were recorded
            old["experiment"] = ""
        if len(old):
            keys = set(map(tuple, rows[HISTORY_KEY].astype(str).values))
            old = old[[tuple(r) not in keys for r in old[HISTORY_KEY].astype(str).values]]
        hist = pd.concat([old, rows], ignore_index=True) if len(old) else rows.reset_index(drop=True)
        _atomic_parquet(hist, path)
    return hist


def read_history(root: str | Path) -> pd.DataFrame:
    path = Path(root) / "metrics" / "history.parquet"
    return pd.read_parquet(path) if path.is_file() else pd.DataFrame(columns=HISTORY_KEY)


def write_comparison(root: str | Path, table: pd.DataFrame) -> Path:
    """The comparison across experiments (one row per experiment and checkpoint), replaced atomically."""
    path = Path(root) / "metrics" / "comparison.parquet"
    _atomic_parquet(table.reset_index(drop=True), path)
    return path
