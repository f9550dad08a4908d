"""Markdown renderings of metric tables (Dagster metadata, README snippets); no extra dependency (tabulate)."""
from __future__ import annotations

import math

import pandas as pd


def _cell(v) -> str:
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else f"{v:.4f}"
    return str(v)


def markdown_table(df: pd.DataFrame, columns: list[str] | None = None, max_rows: int = 40) -> str:
    cols = [c for c in (columns or list(df.columns)) if c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in df.head(max_rows).iterrows():
        lines.append("| " + " | ".join(_cell(row[c]) for c in cols) + " |")
    if len(df) > max_rows:
        lines.append(f"| ... {len(df) - max_rows} more rows |" + " |" * (len(cols) - 1))
    return "\n".join(lines)
