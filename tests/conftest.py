"""Shared fixtures: one synthetic stand-in per test session (generated through the public stage function)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from pipelines.settings import Settings, load_settings

REPO = Path(__file__).resolve().parent.parent
SHARED_TESTDATA = REPO.parent / "shared" / "testdata"


@pytest.fixture(scope="session")
def standin_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipelines.demo_data import ensure_demo_data

    root = tmp_path_factory.mktemp("standin") / "synthetic"
    ensure_demo_data(root, seed=0)
    return root


def settings_for(synthetic_root: Path, data_root: Path | None = None, **extra: str) -> Settings:
    env = {"MORPHABLE_SYNTHETIC_ROOT": str(synthetic_root),
           "MORPHABLE_DATA_ROOT": str(data_root or synthetic_root.parent)}
    env.update({f"MORPHABLE_{k.upper()}": str(v) for k, v in extra.items()})
    return load_settings(env=env)


@pytest.fixture(scope="session")
def standin_settings(standin_root: Path) -> Settings:
    return settings_for(standin_root)


@pytest.fixture
def broken_copy(standin_root: Path, tmp_path: Path):
    """A writable copy of the stand-in's datasets (body models are linked, they are large and read-only here)."""
    dst = tmp_path / "synthetic"
    shutil.copytree(standin_root / "facescape", dst / "facescape")
    shutil.copytree(standin_root / "thuman", dst / "thuman")
    for name in ("facescape_toolkit", "facescape_bm", "body_models"):
        os.symlink(standin_root / name, dst / name)
    return dst


@pytest.fixture
def embedded(tmp_path, monkeypatch, standin_root):
    """A persistent Dagster instance in a temporary DAGSTER_HOME, settings pointing at the session's stand-in."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MORPHABLE_SYNTHETIC_ROOT", str(standin_root))
    monkeypatch.setenv("MORPHABLE_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.delenv("MORPHABLE_SETTINGS", raising=False)
    return tmp_path
