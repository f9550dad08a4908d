"""Shared fixtures: one synthetic stand-in per test session (generated through the public stage function)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from pipelines.settings import Settings, load_settings

REPO = Path(__file__).resolve().parent.parent
TESTDATA = REPO / "tests" / "data"  # facts copied into the repository (tests/data/README.md)
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


#: the files that take longest (docs/benchmarks.md): collected first, so that under `--dist loadfile` each starts on
#: a worker of its own at once instead of leaving one worker alone with them at the end
LONGEST_FIRST = ("test_policy.py", "test_real_size.py", "test_first_stage.py", "test_evaluate.py", "test_train.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # (stable: the order within a file is kept)


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, each worker (and every process it starts) gets its share of the cores' threads unless
    the caller set them: two workers with a thread per core each would oversubscribe the machine."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1 and not any(k in os.environ for k in THREAD_VARIABLES):
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        threads = str(max(1, cores // workers))
        os.environ.update({k: threads for k in THREAD_VARIABLES})
        import torch

        torch.set_num_threads(int(threads))


def shared_build(tmp_path_factory: pytest.TempPathFactory, name: str, build) -> Path:
    """A folder built once per test session and shared by every pytest-xdist worker: the first worker to ask runs
    `build(folder)` under a file lock, the others wait and reuse it. Callers treat it as read-only."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder = shared / f"shared-{name}"
    with FileLock(str(folder) + ".lock"):
        if not (folder / ".complete").is_file():
            if folder.exists():
                shutil.rmtree(folder)
            build(folder)
            (folder / ".complete").write_text("")
    return folder


@pytest.fixture(scope="session")
def standin_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipelines.demo_data import ensure_demo_data

    return shared_build(tmp_path_factory, "standin", lambda folder: ensure_demo_data(folder / "synthetic", seed=0)) \
        / "synthetic"


def settings_for(synthetic_root: Path, data_root: Path | None = None, **extra: str) -> Settings:
    env = {"MORPHABLE_SYNTHETIC_ROOT": str(synthetic_root),
           "MORPHABLE_DATA_ROOT": str(data_root or synthetic_root.parent)}
    env.update({f"MORPHABLE_{k.upper()}": str(v) for k, v in extra.items()})
    return load_settings(env=env)


@pytest.fixture(scope="session")
def standin_settings(standin_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return settings_for(standin_root, tmp_path_factory.mktemp("standin_data"))  # (the stand-in itself is shared)


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
    """Every stand-in subject tracked and rendered into view stores (what training and evaluation read): built once
    per session (shared by the xdist workers), copied into this worker's own data root (tests add runs to it)."""
    from pipelines.track import track
    from pipelines.views import views

    def build(folder: Path) -> None:
        s = settings_for(standin_root, folder)
        for subject in ("1", "2", "3", "122"):
            track(s, "facescape", subject, "flame")
            views(s, "facescape", subject)
        for uid in ("0003", "0526", "1024", "2201", "2301", "2401"):  # (2301, 2401: 2201's person in other poses)
            track(s, "thuman", uid)
            views(s, "thuman", uid)

    template = shared_build(tmp_path_factory, "model_data", build)
    own = tmp_path_factory.mktemp("model_data")
    shutil.copytree(template, own, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".complete"))
    return settings_for(standin_root, own)


@pytest.fixture(scope="session")
def quick_first_stage(model_data: Settings) -> Path:
    """A briefly trained tiny first stage (enough for loop and plumbing tests; the PSNR bar has its own test)."""
    from pipelines.first_stage import FirstStageConfig, train_first_stage

    return train_first_stage(model_data, FirstStageConfig(steps=20), log=lambda *_: None).checkpoint


def _untrained_tiny(folder: Path, projection: str = "perspective") -> Path:
    import dataclasses

    import torch

    from model.diffusion.config import tiny
    from model.diffusion.network import MorphableDiffusion
    from storage.checkpoints import save_checkpoint

    torch.manual_seed(0)
    model = MorphableDiffusion(tiny(projection))
    return save_checkpoint(folder, "tiny", model.state_dict(), {"model": dataclasses.asdict(model.cfg)})


@pytest.fixture(scope="module")
def untrained_tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny network with seeded random weights, saved as a checkpoint (the sampling paths' plumbing and
    reproducibility do not need a trained model)."""
    return _untrained_tiny(tmp_path_factory.mktemp("ckpt"))


@pytest.fixture(scope="module")
def untrained_tiny_body_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same for the THuman line's orthographic cameras."""
    return _untrained_tiny(tmp_path_factory.mktemp("ckpt_body"), "orthographic")
