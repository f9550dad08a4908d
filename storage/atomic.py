"""Atomic writes: build in a temporary sibling, then rename into place, so a crash never leaves a half-written
file or folder that looks complete; and one writer at a time per target, so concurrent runs never mix their parts.

Every folder target has a lock file beside it (`.<name>.lock`, an exclusive `flock` held for the whole write).
Because a live writer always holds its target's lock, the temporaries found by the next lock holder are those of
writers that died, and only those are cleaned up.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from storage.errors import DataError


class SkipWrite(Exception):
    """Raise inside `atomic_directory` to leave the target as it is (e.g. another writer just completed it)."""


class LockTimeout(DataError, TimeoutError):
    """Another process held a target's lock for longer than we were willing to wait."""


def lock_path(target: str | Path) -> Path:
    target = Path(target)
    return target.parent / f".{target.name}.lock"


@contextmanager
def writer_lock(target: str | Path, timeout_s: float | None = None, poll_s: float = 0.1) -> Iterator[None]:
    """Hold the exclusive lock of `target` (waiting for it; `timeout_s` None = as long as it takes)."""
    path = lock_path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | (fcntl.LOCK_NB if deadline is not None else 0))
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LockTimeout(target, f"another process has been writing it for over {timeout_s:.0f} s",
                                      "wait for that run to finish (or remove a dead run's lock file "
                                      f"{path.name} if no process holds it)") from None
                time.sleep(poll_s)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def remove_stale_temporaries(folder: str | Path, name: str) -> int:
    """Delete leftovers `<name>.tmp-*` / `<name>.old-*` of crashed writers; call only while holding the lock of
    `<folder>/<name>`. Returns how many were removed."""
    n = 0
    for p in Path(folder).glob(f"{name}.*-*"):
        if p.name.startswith((f"{name}.tmp-", f"{name}.old-")):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            n += 1
    return n


@contextmanager
def atomic_directory(target: str | Path, lock_timeout_s: float | None = None) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces `target` (old content removed), on error it is
    deleted. The target's writer lock is held throughout; `raise SkipWrite` inside keeps the target unchanged."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with writer_lock(target, lock_timeout_s):
        remove_stale_temporaries(target.parent, target.name)
        tmp = target.with_name(f"{target.name}.tmp-{uuid.uuid4().hex[:8]}")
        tmp.mkdir()
        try:
            yield tmp
        except SkipWrite:
            shutil.rmtree(tmp, ignore_errors=True)
            return
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        old = None
        if target.exists():
            old = target.with_name(f"{target.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; whatever is written there replaces `path` in one rename on success
    (a concurrent reader sees the old file or the new one, never half of one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{uuid.uuid4().hex[:8]}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)


def atomic_save(path: str | Path, save: Callable[[Path], object]) -> Path:
    """`save(tmp)` writes the file (PIL's Image.save, matplotlib's savefig, ...); it then replaces `path`."""
    with atomic_file(path) as tmp:
        save(tmp)
    return Path(path)


OUTPUT_MARKER = ".morphable-output"


@contextmanager
def output_folder(target: str | Path) -> Iterator[Path]:
    """A command's output folder (generate, fit-image), complete or absent: built in a temporary sibling and renamed
    into place, so a failed command leaves nothing behind. An existing folder is replaced only if it is empty or a
    previous output (it carries OUTPUT_MARKER); a folder holding other files is refused, never overwritten."""
    from storage.errors import InvalidContentError

    target = Path(target)
    if target.exists() and (not target.is_dir() or (any(target.iterdir()) and not (target / OUTPUT_MARKER).is_file())):
        raise InvalidContentError(target, "exists and holds files this command did not write",
                                  "choose a new or empty folder for --out")
    with atomic_directory(target) as tmp:
        yield tmp
        (tmp / OUTPUT_MARKER).write_text("written by morphable; replaced as a whole by the next run\n")
