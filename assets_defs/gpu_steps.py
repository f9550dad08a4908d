"""GPU-heavy steps in their own process: Dagster Pipes + one GPU per step (CPU fallback).

The pool (`gpu_heavy`, limit = number of GPUs) bounds how many such steps run at once; inside the step, an exclusive
file lock per GPU under $DAGSTER_HOME/gpu_locks picks *which* GPU, so two concurrent steps never share one even with
several runs and processes. The subprocess sees only that GPU (CUDA_VISIBLE_DEVICES=<i>) or none ("" on a CPU
machine, so torch stays on the CPU). A dead subprocess releases its lock (the OS drops it) and the run monitoring of
dagster.yaml frees the pool slot of a dead run.
"""
import contextlib
import fcntl
import os
import sys
import time
from pathlib import Path
from typing import Iterator

import dagster as dg

from assets_defs.instance import dagster_home, gpu_count


@contextlib.contextmanager
def gpu_slot(poll_seconds: float = 2.0, timeout_seconds: float = 3600.0) -> Iterator[int | None]:
    """Hold one GPU exclusively (its index) for the duration, or yield None on a machine without GPUs."""
    n = gpu_count()
    if n == 0:
        yield None
        return
    folder = dagster_home() / "gpu_locks"
    folder.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_seconds
    while True:
        for i in range(n):
            fh = open(folder / f"gpu{i}.lock", "w")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.close()
                continue
            try:
                yield i
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
                fh.close()
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"no GPU free after {timeout_seconds:.0f} s (locks under {folder})")
        time.sleep(poll_seconds)


def _visible_device(index: int) -> str:
    """The physical id of the index-th visible GPU (respects a CUDA_VISIBLE_DEVICES the orchestrator runs under)."""
    visible = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return visible[index] if visible else str(index)


def run_gpu_task(context: dg.AssetExecutionContext, task: str, config: dict,
                 settings_file: str = "") -> dg.MaterializeResult:
    """Run `pipelines.worker` for `task` in a subprocess pinned to one GPU and return its materialization."""
    client = dg.PipesSubprocessClient(cwd=str(Path(__file__).resolve().parent.parent))
    with gpu_slot() as gpu:
        env = {"CUDA_VISIBLE_DEVICES": "" if gpu is None else _visible_device(gpu), "PYTHONUNBUFFERED": "1"}
        context.log.info(f"{task}: {'GPU ' + env['CUDA_VISIBLE_DEVICES'] if gpu is not None else 'CPU (no GPU)'}")
        invocation = client.run(context=context, command=[sys.executable, "-m", "pipelines.worker"], env=env,
                                extras={"task": task, "config": config, "settings_file": settings_file})
    return invocation.get_materialize_result()


def latest_uri(context: dg.AssetExecutionContext, key: dg.AssetKey) -> str | None:
    """The `dagster/uri` of the latest materialization of `key` (where an upstream GPU step put its output)."""
    event = context.instance.get_latest_materialization_event(key)
    if event is None or event.asset_materialization is None:
        return None
    value = event.asset_materialization.metadata.get("dagster/uri")
    return None if value is None else str(value.value)
