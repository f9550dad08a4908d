"""Stable content hashes used as data versions."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable


def hash_json(obj: Any, length: int = 16) -> str:
    """sha256 of a canonical JSON encoding (sorted keys, no whitespace)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def hash_file_list(entries: Iterable[tuple[str, int]], length: int = 16) -> str:
    """Hash of (relative path, size) pairs: cheap, and changes when a file is added, removed or resized."""
    return hash_json(sorted(entries), length)


def hash_file(path: str | Path, length: int = 64) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:length]
