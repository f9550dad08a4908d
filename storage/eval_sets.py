"""Generated evaluation sets: per protocol, per checkpoint (or baseline), the generated and ground-truth views of
every evaluation pair, so metrics can be recomputed without re-sampling.

    <root>/eval_sets/<protocol>/<method>-<checkpoint hash>-<inputs digest>/
        pairs/<subject>__<item>.npz   generated, gt (n, S, S, 3) uint8; mask (n, S, S) uint8; input (S, S, 3) uint8;
                                      view (n,) store indices; angles (n, 2) azimuth/elevation;
                                      K (n, 4, 4); RT (n, 3, 4)
        manifest.json                 written last: protocol, checkpoint, pairs (input item / view), sampler, hash
The folder is built beside its final name and renamed into place (storage.atomic).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from storage.atomic import atomic_directory
from storage.errors import CorruptFileError, MissingFileError

MANIFEST = "manifest.json"
FORMAT = "morphable-eval-set-1"
ARRAYS = ("generated", "gt", "mask", "input", "view", "angles", "K", "RT")


def eval_set_path(root: str | Path, protocol: str, method: str, version: str) -> Path:
    """`version` = checkpoint hash (or baseline + size) and the digest of the other inputs."""
    return Path(root) / "eval_sets" / protocol / f"{method}-{version}"


@dataclass
class EvalSetPair:
    key: str
    info: dict[str, Any]
    arrays: dict[str, np.ndarray]


class EvalSetWriter:
    """Collects pairs in a temporary folder; `finish()` writes the manifest and renames into place."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        (tmp / "pairs").mkdir()
        self.pairs: list[dict[str, Any]] = []
        self.digest = hashlib.sha256()

    def add(self, key: str, info: dict[str, Any], **arrays: np.ndarray) -> None:
        missing = set(ARRAYS) - set(arrays)
        if missing:
            raise ValueError(f"pair {key}: missing arrays {sorted(missing)}")
        np.savez_compressed(self.tmp / "pairs" / f"{key}.npz", **arrays)
        self.digest.update(key.encode())
        self.digest.update(np.ascontiguousarray(arrays["generated"]).tobytes())
        self.pairs.append({"key": key, **info})


def write_eval_set(target: Path, header: dict[str, Any], fill) -> dict[str, Any]:
    """Run `fill(writer)` inside an atomic folder and write the manifest last; returns the manifest."""
    with atomic_directory(target) as tmp:
        writer = EvalSetWriter(tmp)
        fill(writer)
        manifest = {"format": FORMAT, **header, "pairs": writer.pairs, "content_hash": writer.digest.hexdigest()[:32]}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


class EvalSet:
    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path, self.manifest = path, manifest

    @classmethod
    def open(cls, path: str | Path) -> "EvalSet":
        path = Path(path)
        if not path.is_dir():
            raise MissingFileError(path, "evaluation set not found", "materialize the evaluation-set asset or run "
                                                                     "`morphable evaluate`")
        if not (path / MANIFEST).is_file():
            raise CorruptFileError(path, "evaluation set is incomplete (no manifest.json)", "delete it and "
                                                                                            "regenerate")
        manifest = json.loads((path / MANIFEST).read_text())
        if manifest.get("format") != FORMAT:
            raise CorruptFileError(path, f"unknown evaluation-set format {manifest.get('format')!r}",
                                   "delete it and regenerate")
        return cls(path, manifest)

    def __len__(self) -> int:
        return len(self.manifest["pairs"])

    def pairs(self) -> Iterator[EvalSetPair]:
        for info in self.manifest["pairs"]:
            with np.load(self.path / "pairs" / f"{info['key']}.npz") as data:
                yield EvalSetPair(info["key"], info, {k: data[k] for k in data.files})
