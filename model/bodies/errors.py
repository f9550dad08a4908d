"""Errors for body-model files: name the file, the problem, and how to get a correct file."""
from __future__ import annotations

from pathlib import Path

from storage.errors import DataError


class BodyModelError(DataError):
    """A body-model file that is missing or malformed ("<file>: <problem>. Fix: <how>", like every data error)."""


def require_file(path: Path, what: str, fix: str) -> Path:
    """Return `path` if it is a file, else raise a BodyModelError saying what it should be and where to get it."""
    if not path.is_file():
        raise BodyModelError(path, f"{what} not found", fix)
    return path


def require_array(path: Path, data: dict, key: str, shape: tuple[int | None, ...]) -> None:
    """Check that `data[key]` exists and matches `shape` (None = any size), else raise a named error."""
    import numpy as np

    if key not in data:
        raise BodyModelError(path, f"missing key {key!r} (keys present: {sorted(data)[:20]})",
                             "use the original model file; it is incomplete or of another kind")
    arr = data[key]
    got = tuple(np.shape(arr))
    if len(got) != len(shape) or any(s is not None and s != g for s, g in zip(shape, got)):
        want = "x".join("N" if s is None else str(s) for s in shape)
        raise BodyModelError(path, f"key {key!r} has shape {got}, expected {want}",
                             "use the original model file; this one is from another model or was modified")
