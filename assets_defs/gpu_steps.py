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
import re
import sys
import time
from pathlib import Path
from typing import Iterator

import dagster as dg

from assets_defs.instance import dagster_home, gpu_count


@contextlib.contextmanager
def gpu_slots(count: int = 1, poll_seconds: float = 2.0, timeout_seconds: float = 3600.0) -> Iterator[list[int]]:
    """Hold `count` GPUs exclusively (their indices) for the duration; [] on a machine without GPUs."""
    n = gpu_count()
    if n == 0:
        yield []
        return
    if count > n:
        raise ValueError(f"{count} GPUs requested but only {n} visible")
    folder = dagster_home() / "gpu_locks"
    folder.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_seconds
    while True:
        held: list[tuple[int, object]] = []
        for i in range(n):
            fh = open(folder / f"gpu{i}.lock", "w")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.close()
                continue
            held.append((i, fh))
            if len(held) == count:
                break
        if len(held) == count:
            try:
                yield [i for i, _ in held]
            finally:
                for _, fh in held:
                    fcntl.flock(fh, fcntl.LOCK_UN)
                    fh.close()
            return
        for _, fh in held:  # not enough free: give back what we took, so two steps never deadlock
            fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{count} GPU(s) not free after {timeout_seconds:.0f} s (locks under {folder})")
        time.sleep(poll_seconds)


def _visible_device(index: int) -> str:
    """The physical id of the index-th visible GPU (respects a CUDA_VISIBLE_DEVICES the orchestrator runs under)."""
    visible = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return visible[index] if visible else str(index)


def k8s_gpu_tags(gpus: int = 1) -> dict[str, str]:
    """Op tags for the Kubernetes executor / launcher: request `gpus` NVIDIA GPUs for the step's pod."""
    import json

    res = {"limits": {"nvidia.com/gpu": str(gpus)}, "requests": {"nvidia.com/gpu": str(gpus)}}
    return {"dagster-k8s/config": json.dumps({"container_config": {"resources": res}})}


#: where a GPU-heavy step runs on a machine with no GPU: "in_process" (default: the step's own process, which under
#: the daemon's multiprocess executor is already one process per step; no worker start, whose imports cost 3-4 s
#: per step) or "worker" (the Pipes subprocess, as on GPU machines)
CPU_STEPS_ENV = "MORPHABLE_CPU_STEPS"


def cpu_steps_in_process() -> bool:
    mode = os.environ.get(CPU_STEPS_ENV, "in_process")
    if mode not in ("in_process", "worker"):
        raise ValueError(f"{CPU_STEPS_ENV}={mode!r}: use in_process or worker")
    return mode == "in_process" and gpu_count() == 0


def run_gpu_task(context: dg.AssetExecutionContext, task: str, config: dict, settings_file: str = "",
                 gpus: int = 1) -> dg.MaterializeResult:
    """Run `pipelines.worker` for `task` in a subprocess pinned to its GPU(s) and return its materialization;
    with gpus > 1 (training) the worker runs under torchrun, one process per GPU, rank 0 reporting. On a machine
    without a GPU the task runs in this process unless $MORPHABLE_CPU_STEPS=worker (same code, same metadata)."""
    import json

    if cpu_steps_in_process():
        return run_task_in_process(context, task, config, settings_file)

    from assets_defs.pipes_channel import WholeLineFileMessageReader

    client = dg.PipesSubprocessClient(cwd=str(Path(__file__).resolve().parent.parent),
                                      message_reader=WholeLineFileMessageReader())
    with gpu_slots(gpus if gpu_count() else 1) as held:
        env = {"CUDA_VISIBLE_DEVICES": ",".join(_visible_device(i) for i in held), "PYTHONUNBUFFERED": "1",
               "MORPHABLE_WORKER_TASK": json.dumps({"task": task, "config": config, "settings_file": settings_file})}
        context.log.info(f"{task}: {'GPU ' + env['CUDA_VISIBLE_DEVICES'] if held else 'CPU (no GPU)'}")
        command = [sys.executable, "-m", "pipelines.worker"]
        if len(held) > 1:
            command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                       f"--nproc_per_node={len(held)}", "-m", "pipelines.worker"]
        invocation = run_worker_process(context, client, command, env,
                                        {"task": task, "config": config, "settings_file": settings_file})
    return worker_report(invocation.get_results(implicit_materializations=False), task)


def run_task_in_process(context: dg.AssetExecutionContext, task: str, config: dict, settings_file: str = ""
                        ) -> dg.MaterializeResult:
    """The worker's task in this process: the metadata the worker would send over Pipes, converted here."""
    import json

    import torch

    from assets_defs.outcomes import dagster_metadata
    from pipelines.settings import load_settings
    from pipelines.worker import TASKS, device_info

    settings = load_settings(settings_file or None)
    context.log.info(f"{task}: CPU (no GPU), in the step's process ({device_info()})")
    config = json.loads(json.dumps(config))  # what the worker receives: the same types (lists, not tuples)
    threads = torch.get_num_threads()
    try:
        meta, version = TASKS[task](settings, config, context.log.info)
    finally:  # (a resumed training adopts its run's thread count: the next step must not inherit it)
        torch.set_num_threads(threads)
    return worker_report([dg.MaterializeResult(metadata=dagster_metadata(meta), data_version=dg.DataVersion(version))],
                         task)


#: how often a step whose worker was killed (out of memory, preempted, a node drained) is tried again in its run
TRANSIENT_RETRIES = 2
RETRY_WAIT_SECONDS = 5
_EXIT_CODE = re.compile(r"failed with code (-?\d+)")


def killed_exit_code(exc: BaseException) -> int | None:
    """The exit code of a worker that a signal ended (negative: the signal's number; 128 + n from a shell or a
    container runtime: SIGKILL 137, SIGTERM 143), else None: an error the worker raised itself is deterministic."""
    match = _EXIT_CODE.search(str(exc))
    if match is None:
        return None
    code = int(match.group(1))
    return code if code < 0 or code in (137, 143) else None


def run_worker_process(context: dg.AssetExecutionContext, client: dg.PipesSubprocessClient, command: list[str],
                       env: dict, extras: dict):
    """`client.run`, with a worker killed by a signal retried (bounded) and every other failure reported once."""
    try:
        return client.run(context=context, command=command, env=env, extras=extras)
    except Exception as exc:  # noqa: BLE001 - Pipes reports a worker's exit as a plain exception
        code = killed_exit_code(exc)
        if code is None:
            raise
        context.log.warning(f"the worker was killed (exit code {code}); retrying the step "
                            f"(at most {TRANSIENT_RETRIES} times)")
        raise dg.RetryRequested(max_retries=TRANSIENT_RETRIES, seconds_to_wait=RETRY_WAIT_SECONDS) from exc


def worker_report(results, task: str) -> dg.MaterializeResult:
    """The worker's one materialization; a step whose worker exited without reporting where its output is fails
    (it must never succeed without its `dagster/uri`, or downstream steps read nothing)."""
    reports = [r for r in results if isinstance(r, dg.MaterializeResult)]
    if len(reports) != 1 or "dagster/uri" not in (reports[0].metadata or {}):
        raise dg.Failure(f"the {task} worker exited without reporting its output ({len(reports)} materialization "
                         "reports received); see the step's stderr for the worker's own log")
    return reports[0]
