"""Markdown renderings of metric tables (Dagster metadata, README snippets); no extra dependency (tabulate)."""
from __future__ import annotations

import math

import pandas as pd


def _cell(v) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "n/a"
        return f"{v:.3g}" if 0 < abs(v) < 1e-3 else f"{v:.4f}"  # (small scores, e.g. warping errors: 3 digits)
    return str(v)


def markdown_table(df: pd.DataFrame, columns: list[str] | None = None, max_rows: int = 40) -> str:
    cols = [c for c in (columns or list(df.columns)) if c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in df.head(max_rows).iterrows():
        lines.append("| " + " | ".join(_cell(row[c]) for c in cols) + " |")
    if len(df) > max_rows:
        lines.append(f"| ... {len(df) - max_rows} more rows |" + " |" * (len(cols) - 1))
    return "\n".join(lines)
