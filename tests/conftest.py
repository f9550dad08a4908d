"""Shared fixtures: one synthetic stand-in per test session (generated through the public stage function)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from pipelines.settings import Settings, load_settings

REPO = Path(__file__).resolve().parent.parent
TESTDATA = REPO / "tests" / "data"  # facts copied into the repository (tests/data/README.md)


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


@pytest.fixture(scope="session")
def model_data(standin_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Every stand-in subject tracked and rendered into view stores (what training and evaluation read)."""
    from pipelines.track import track
    from pipelines.views import views

    s = settings_for(standin_root, tmp_path_factory.mktemp("model_data"))
    for subject in ("1", "2", "3", "122"):
        track(s, "facescape", subject, "flame")
        views(s, "facescape", subject)
    for uid in ("0003", "0526", "1024", "2201"):
        track(s, "thuman", uid)
        views(s, "thuman", uid)
    return s


@pytest.fixture(scope="session")
def quick_first_stage(model_data: Settings) -> Path:
    """A briefly trained tiny first stage (enough for loop and plumbing tests; the PSNR bar has its own test)."""
    from pipelines.first_stage import FirstStageConfig, train_first_stage

    return train_first_stage(model_data, FirstStageConfig(steps=20), log=lambda *_: None).checkpoint
