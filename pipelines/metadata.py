"""What a stage reports about its output, in plain typed values: the asset layer shows them in the UI
(assets_defs/outcomes.py turns them into Dagster metadata), the GPU worker sends them over Dagster Pipes (`to_wire`).
Plain numbers, strings and booleans are reported as they are; the wrappers say how the others are shown."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Markdown:
    text: str


@dataclass(frozen=True)
class JsonValue:
    value: Any


@dataclass(frozen=True)
class PathValue:
    path: str


@dataclass(frozen=True)
class TableColumns:
    """A table's column names and dtypes (the UI's column schema)."""

    columns: dict[str, str]


Metadata = dict[str, Any]
_WIRE = {Markdown: ("md", "text"), JsonValue: ("json", "value"), PathValue: ("path", "path")}


def to_wire(meta: Metadata) -> dict[str, Any]:
    """The Dagster Pipes wire form ({"raw_value", "type"}) of a stage's metadata (the worker's report)."""
    out: dict[str, Any] = {}
    for key, value in meta.items():
        if type(value) in _WIRE:
            kind, attr = _WIRE[type(value)]
            out[key] = {"raw_value": getattr(value, attr), "type": kind}
        elif isinstance(value, TableColumns):
            out[key] = {"raw_value": value.columns, "type": "json"}
        else:
            out[key] = value
    return out
