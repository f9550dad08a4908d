"""Pools: how many steps of each kind run at once, on any machine. One code path sets them: `get_instance` (what
`morphable demo` and `morphable ui` start from) and every tick of the `discovery` sensor (so a daemon on a workstation
or a cluster applies them without anyone running a command); `morphable pools` prints or applies them by hand.

- `cpu`: the CPU-only stages (tracking, views, metrics); one slot per core of this machine, or MORPHABLE_CPU_SLOTS
  (on a cluster, where each step is a pod: how many CPU pods may run at once).
- `gpu_heavy`: the stages that run the diffusion model in their own process (first stage, checkpoints, evaluation
  sets); one slot per GPU, one on a machine without GPUs (the CPU fallback), or MORPHABLE_GPU_SLOTS (on a cluster:
  the GPUs the deployment may hold at once).
"""
from __future__ import annotations

import os

import dagster as dg

from assets_defs.instance import gpu_count

CPU_POOL = "cpu"
GPU_POOL = "gpu_heavy"
ENV = {CPU_POOL: "MORPHABLE_CPU_SLOTS", GPU_POOL: "MORPHABLE_GPU_SLOTS"}


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _from_env(pool: str) -> int | None:
    raw = os.environ.get(ENV[pool], "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{ENV[pool]}={raw!r}: the number of {pool} pool slots must be a positive integer. "
                         f"Fix: set it to 1 or more, or unset it to use this machine's count")
    return value


def pool_limits() -> dict[str, int]:
    """{pool: slots} for this machine (or what the environment says)."""
    return {CPU_POOL: _from_env(CPU_POOL) or _cores(), GPU_POOL: _from_env(GPU_POOL) or max(1, gpu_count())}


def apply_pool_limits(instance: dg.DagsterInstance) -> dict[str, int]:
    """Set every pool's slots on the instance; returns the pools whose limit changed ({pool: new slots})."""
    changed = {}
    storage = instance.event_log_storage
    for pool, slots in pool_limits().items():
        if storage.get_concurrency_info(pool).slot_count != slots:
            storage.set_concurrency_slots(pool, slots)
            changed[pool] = slots
    return changed
