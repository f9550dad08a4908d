"""The one conversion from what a stage reports to what Dagster records: its metadata (pipelines/metadata.py) as
Dagster metadata values, its lineage record (pipelines/records.py) as the output the lineage IO manager stores, its
data version. The assets call a stage and return `output(...)`; a stage run in the GPU worker reports the same
metadata over Pipes, and `reported_output` attaches the record to that report."""
from __future__ import annotations

from typing import Any

import dagster as dg

from pipelines.metadata import JsonValue, Markdown, Metadata, PathValue, TableColumns


def dagster_metadata(meta: Metadata) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in meta.items():
        if isinstance(value, Markdown):
            out[key] = dg.MetadataValue.md(value.text)
        elif isinstance(value, JsonValue):
            out[key] = dg.MetadataValue.json(value.value)
        elif isinstance(value, PathValue):
            out[key] = dg.MetadataValue.path(value.path)
        elif isinstance(value, TableColumns):
            out[key] = dg.TableSchema(columns=[dg.TableColumn(c, t) for c, t in value.columns.items()])
        else:
            out[key] = value
    return out


def output(record, data_version: str, metadata: Metadata) -> dg.Output:
    """A stage's outcome as the asset's output."""
    return dg.Output(record, data_version=dg.DataVersion(data_version), metadata=dagster_metadata(metadata))


def reported_output(record, report: dg.MaterializeResult) -> dg.Output:
    """The output of a stage the GPU worker ran: its report's metadata and data version, with the record."""
    return dg.Output(record, metadata=dict(report.metadata or {}), data_version=report.data_version)


def plain(value):
    """A reported metadata value's plain content (path / JSON / text)."""
    return value.value if isinstance(value, dg.MetadataValue) else value
