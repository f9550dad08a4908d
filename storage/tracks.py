"""Track store: fitted parameters and model-frame vertices per subject and tracker version.

    <root>/tracks/<dataset>/<subject>/<tracker_version>/
        params.json     per item (expression or scan): parameters, rounded; plus shared ones under "_subject"
        meshes.npz      per item: model-frame vertices (float32); "faces"
        metrics.json    per item: fit errors (mm) and anything the tracker reports
        manifest.json   written last: data_version = hash of the rounded parameters

The data version depends only on the rounded parameters, so re-running an unchanged tracker (tiny floating-point
differences included) gives the same version and nothing downstream re-runs.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from storage.atomic import atomic_directory
from storage.errors import InvalidContentError, MissingFileError
from storage.hashing import hash_json
from storage.ids import validate_subject_id

PARAM_DECIMALS = 4


@dataclass
class TrackRecord:
    dataset: str
    subject: str
    tracker_version: str
    params: dict[str, dict[str, Any]]  # item -> name -> float | list
    vertices: dict[str, np.ndarray]  # item -> (V, 3), model frame
    faces: np.ndarray
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    data_version: str = ""

    @property
    def items(self) -> list[str]:
        return sorted(self.vertices)


def round_params(obj: Any, decimals: int = PARAM_DECIMALS) -> Any:
    """Arrays -> nested lists and floats rounded (-0.0 normalised), recursively."""
    if isinstance(obj, dict):
        return {k: round_params(v, decimals) for k, v in sorted(obj.items())}
    if isinstance(obj, (list, tuple)):
        return [round_params(v, decimals) for v in obj]
    if isinstance(obj, np.ndarray):
        return round_params(obj.tolist(), decimals)
    if isinstance(obj, (float, np.floating)):
        r = round(float(obj), decimals)
        return 0.0 if r == 0 else r
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def params_data_version(params: dict[str, Any]) -> str:
    return hash_json(round_params(params))


def track_dir(root: str | Path, dataset: str, subject: str, tracker_version: str) -> Path:
    return Path(root) / "tracks" / dataset / validate_subject_id(subject) / tracker_version


def write_track(root: str | Path, record: TrackRecord) -> TrackRecord:
    """Write atomically; returns the record with its data version filled in."""
    for item, v in record.vertices.items():
        if not np.all(np.isfinite(v)):
            raise InvalidContentError(None, f"{record.dataset}/{record.subject} item {item!r}: non-finite vertices",
                                      "the fit diverged; check the input data and the tracker configuration")
    params = round_params(record.params)
    record.data_version = hash_json(params)
    target = track_dir(root, record.dataset, record.subject, record.tracker_version)
    with atomic_directory(target) as tmp:
        (tmp / "params.json").write_text(json.dumps(params, indent=1))
        np.savez(tmp / "meshes.npz", faces=record.faces.astype(np.int32),
                 **{f"v/{k}": v.astype(np.float32) for k, v in record.vertices.items()})
        (tmp / "metrics.json").write_text(json.dumps(record.metrics, indent=1, default=float))
        (tmp / "manifest.json").write_text(json.dumps(
            {"dataset": record.dataset, "subject": record.subject, "tracker_version": record.tracker_version,
             "data_version": record.data_version, "items": record.items}, indent=1))
    return record


def read_track(root: str | Path, dataset: str, subject: str, tracker_version: str) -> TrackRecord:
    d = track_dir(root, dataset, subject, tracker_version)
    manifest = d / "manifest.json"
    if not manifest.is_file():
        raise MissingFileError(manifest, f"no complete track for {dataset}/{subject} with {tracker_version}",
                               f"run `morphable track --dataset {dataset} --subject {subject}`")
    m = json.loads(manifest.read_text())
    with np.load(d / "meshes.npz") as z:
        verts = {k[2:]: z[k].astype(np.float64) for k in z.files if k.startswith("v/")}
        faces = z["faces"].astype(np.int64)
    return TrackRecord(dataset, subject, tracker_version, json.loads((d / "params.json").read_text()), verts, faces,
                       json.loads((d / "metrics.json").read_text()), m["data_version"])
