"""Lineage records: what one asset partition hands to the partitions downstream of it (where its output is, its
content hash, the experiment and line it belongs to), as typed values.

The stages return them inside their outcomes; the lineage IO manager (assets_defs/lineage.py) writes each as JSON
under `<storage>/lineage/<asset key>/<partition>.json` with its type's name, and reads back exactly the record of
the upstream partition a run depends on, as the same type. A file of another type, or one an earlier version wrote
without a type, is refused by name.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class FirstStageRecord:
    folder: str
    checkpoint_hash: str


@dataclass(frozen=True)
class CheckpointRecord:
    """An experiment's model: a checkpoint folder (trained or imported), or a baseline's method (no folder)."""

    experiment: str
    kind: str  # "trained" | "published" | "baseline"
    dataset: str
    topology: str
    folder: str | None
    checkpoint_hash: str
    method: str | None = None  # baselines
    image_size: int = 64  # baselines


@dataclass(frozen=True)
class ProtocolViewsRecord:
    """Which view stores of a line a protocol's evaluation reads ({subject: content hash}) and their digest."""

    protocol: str
    dataset: str
    topology: str
    digest: str
    stores: dict[str, str]


@dataclass(frozen=True)
class EvalSetRecord:
    experiment: str
    protocol: str
    kind: str
    eval_set: str
    checkpoint_hash: str
    protocol_views: str
    ablation_sets: dict[str, str] = field(default_factory=dict)  # ablation -> its evaluation set


@dataclass(frozen=True)
class MetricsRecord:
    """One evaluation's per-protocol row (and its ablations' rows), where its tables are."""

    experiment: str
    protocol: str
    dataset: str
    topology: str
    kind: str
    tables: str
    eval_set: str
    row: dict[str, Any]
    ablation_rows: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class AnimationRecord:
    """One experiment's animation through one sequence: where it is, and each sampler's scores (the experiment's,
    the independent baseline, the ground truth's floor)."""

    experiment: str
    sequence: str
    dataset: str
    topology: str
    kind: str
    folder: str
    checkpoint_hash: str
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    settings: str = ""  # digest of the sequence, sampler and animation settings it ran with (animations.settings_digest)


@dataclass(frozen=True)
class ComparisonRecord:
    table: str
    rows: int


RECORD_TYPES: dict[str, type] = {cls.__name__: cls for cls in (
    FirstStageRecord, CheckpointRecord, ProtocolViewsRecord, EvalSetRecord, MetricsRecord, AnimationRecord,
    ComparisonRecord)}


def record_json(record) -> str:
    """The record as JSON, with its type's name."""
    if type(record).__name__ not in RECORD_TYPES:
        raise TypeError(f"not a lineage record: {type(record).__name__} (one of {sorted(RECORD_TYPES)})")
    return json.dumps({"record": type(record).__name__, **dataclasses.asdict(record)}, indent=1, default=str)


def read_record(path: Path):
    """The record in `path`, as its type; a file without a known type is refused, naming the fix."""
    from storage.errors import InvalidContentError
    from storage.jsonfile import read_json

    fix = "materialize the asset partition again (it writes a current record)"
    doc = read_json(path, "a lineage record", fix)
    cls = RECORD_TYPES.get(doc.pop("record", None)) if isinstance(doc, dict) else None
    if cls is None:
        raise InvalidContentError(path, "not a lineage record of this version (no known record type)", fix)
    try:
        return cls(**doc)
    except TypeError as exc:
        raise InvalidContentError(path, f"a {cls.__name__} with other fields ({exc})", fix) from None
