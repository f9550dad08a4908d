"""Benchmarks never write into the user's configured store: they work in a temporary storage root whose `views/`
links (read-only use) to the configured store's view stores, so everything they produce is thrown away."""
from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def temporary_store_over_views() -> Iterator[object]:
    from pipelines.settings import load_settings

    base = load_settings()
    views = Path(base.storage_root) / "views"
    if not views.is_dir():
        raise SystemExit(f"no view stores under {views}: run `make demo` (or `morphable views`) first")
    with tempfile.TemporaryDirectory(prefix="morphable-bench-") as tmp:
        store = Path(tmp) / "store"
        store.mkdir()
        os.symlink(views, store / "views")
        yield dataclasses.replace(base, storage_root=store)
