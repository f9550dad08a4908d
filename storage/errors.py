"""Errors raised by the raw-data readers: each names the file, what is wrong and how to fix it."""
from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """A problem with one input file or folder, reported with the path, the problem and a fix.

    Subclassing ValueError keeps `except ValueError` callers working while the message stays readable.
    """

    def __init__(self, path: str | Path | None, problem: str, fix: str = "") -> None:
        self.path = Path(path) if path is not None else None
        self.problem = problem
        self.fix = fix
        where = f"{self.path}: " if self.path is not None else ""
        hint = f" Fix: {fix}" if fix else ""
        super().__init__(f"{where}{problem}.{hint}")


class MissingFileError(DataError, FileNotFoundError):
    """A required file or folder is absent."""


class CorruptFileError(DataError):
    """A file exists but cannot be decoded (truncated image, broken JSON, unreadable mesh)."""


class InvalidContentError(DataError):
    """A file decodes but its content is wrong (shape, non-finite values, inconsistent keys)."""


class InvalidIdError(DataError):
    """A subject or expression identifier that is malformed or would escape its dataset root."""
