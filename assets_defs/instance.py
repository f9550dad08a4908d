"""The embedded Dagster instance: DAGSTER_HOME inside the checkout, our dagster.yaml, the pool limits."""
import os
import shutil
import subprocess
from pathlib import Path

import dagster as dg

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_HOME = REPO_ROOT / ".dagster_home"


def dagster_home() -> Path:
    """$DAGSTER_HOME if set, else .dagster_home/ in the checkout (never the repo root: Dagster writes storage/ there)."""
    home = Path(os.environ.get("DAGSTER_HOME") or DEFAULT_HOME).resolve()
    if home == REPO_ROOT:
        raise RuntimeError("DAGSTER_HOME must not be the repository root (Dagster would create storage/ there, "
                           "which clashes with the project's storage package); use .dagster_home")
    return home


def gpu_count() -> int:
    """GPUs visible to this machine, without importing torch (CUDA_VISIBLE_DEVICES, else nvidia-smi)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def prepare_home(home: Path | None = None) -> Path:
    """Create DAGSTER_HOME with the repository's dagster.yaml (refreshed when it changed) and export it."""
    home = home or dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    src, dst = REPO_ROOT / "dagster.yaml", home / "dagster.yaml"
    if not dst.exists() or dst.read_bytes() != src.read_bytes():
        shutil.copyfile(src, dst)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def get_instance(home: Path | None = None) -> dg.DagsterInstance:
    """The persistent embedded instance, its pools sized for this machine (assets_defs/pools.py)."""
    from assets_defs.pools import apply_pool_limits

    prepare_home(home)
    instance = dg.DagsterInstance.get()
    apply_pool_limits(instance)
    return instance
