"""Stable content hashes used as data versions."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable


def hash_json(obj: Any, length: int = 16, spaced: bool = False) -> str:
    """sha256 of a canonical JSON encoding (sorted keys, no whitespace). `spaced`: json.dumps's default separators
    (", ", ": "), which the digests that name experiments, protocols, evaluation sets and checkpoint imports were
    made with; they keep it so that nothing stored under those names is orphaned."""
    text = json.dumps(obj, sort_keys=True, separators=(", ", ": ") if spaced else (",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def hash_dataframe(df, length: int = 16) -> str:
    """sha256 of a table's values row by row (pandas' per-row hashes, index ignored): a table's data version."""
    import pandas as pd

    return hashlib.sha256(pd.util.hash_pandas_object(df, index=False).values.tobytes()).hexdigest()[:length]


class ContentHashCache:
    """sha256 of files, remembered by (size, mtime_ns) in a JSON file: a subject's content version costs one stat per
    file when nothing changed, and reads only the files that did. A rewrite at the same size changes the mtime, so
    it is re-read; a touch re-reads the file but gives the same hash, so nothing downstream changes."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self._entries: dict[str, list] = {}
        self._dirty = False
        if self.path is not None and self.path.is_file():
            try:
                loaded = json.loads(self.path.read_text(encoding="utf-8"))
                self._entries = loaded if isinstance(loaded, dict) else {}
            except (OSError, ValueError):
                self._entries = {}  # a cache: an unreadable one is rebuilt, never trusted

    def sha256(self, path: str | Path) -> str:
        st = os.stat(path)
        key = os.path.abspath(path)  # (no realpath: its lstat per path component was most of a discovery tick)
        hit = self._entries.get(key)
        if isinstance(hit, list) and len(hit) == 3 and hit[:2] == [st.st_size, st.st_mtime_ns]:
            return str(hit[2])
        digest = hash_file(path)
        self._entries[key] = [st.st_size, st.st_mtime_ns, digest]
        self._dirty = True
        return digest

    def save(self) -> None:
        """Merge into the file under its lock (several processes may hash at once; no entry is lost). A cache that
        cannot be written (a read-only folder) is skipped: the files are hashed again next time."""
        if self.path is None or not self._dirty:
            return
        from storage.atomic import atomic_write_text, writer_lock

        try:
            with writer_lock(self.path):
                current: dict = {}
                if self.path.is_file():
                    try:
                        current = json.loads(self.path.read_text(encoding="utf-8"))
                    except (OSError, ValueError):
                        current = {}
                current.update(self._entries)
                atomic_write_text(self.path, json.dumps(current, separators=(",", ":")))
        except OSError:
            return
        self._dirty = False


def store_hash_cache(storage_root: str | Path) -> ContentHashCache:
    """The store's shared cache of file hashes (raw subjects' files, published checkpoint files)."""
    return ContentHashCache(Path(storage_root) / "cache" / "file_hashes.json")


def cached_sha256(path: str | Path, cache: ContentHashCache) -> str:
    """sha256 of one (large) file through `cache`, saved at once."""
    digest = cache.sha256(Path(path))
    cache.save()
    return digest


def content_version(files: Iterable[tuple[str, str | Path]], cache: ContentHashCache | None = None,
                    length: int = 16, save: bool = True) -> str:
    """Data version of a set of files: hash of (relative path, sha256 of the bytes) pairs. Changes when any file's
    content changes, is added or removed; not when files are only copied or touched. `save=False` leaves saving
    the cache to the caller (many subjects, one write)."""
    cache = cache or ContentHashCache(None)
    out = hash_json(sorted((rel, cache.sha256(p)) for rel, p in files), length)
    if save:
        cache.save()
    return out


def hash_file(path: str | Path, length: int = 64) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:length]


def list_files(folder: str | Path, prefix: str = "") -> list[tuple[str, str]]:
    """(relative path with `prefix`, absolute path) of every file under `folder`, sorted; [] if it is missing.
    os.walk, not pathlib's rglob: a discovery tick lists every raw file of every subject (450k for FaceScape and
    THuman 2.1), and pathlib's per-path object cost dominated it."""
    base = os.path.abspath(folder)
    out = []
    for top, _dirs, names in os.walk(base):
        rel_top = os.path.relpath(top, base)
        for name in names:
            rel = name if rel_top == "." else f"{rel_top}/{name}"
            out.append((prefix + rel, os.path.join(top, name)))
    return sorted(out)
