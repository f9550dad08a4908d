"""This process's share of the CPU, and an order-keeping map over it for work that releases the GIL.

Numpy's large array operations, OpenCV and Open3D's ray casts release the GIL, so independent per-item work (one
camera view, one batch of robust-fit problems) runs on several cores in threads, without the pickling and start-up
of processes. Each item is computed alone, whatever runs beside it, so the results are the same bits for any thread
count; `ordered_map` returns them in the items' order.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def default_threads() -> int:
    """$OMP_NUM_THREADS where set (the per-subject worker pools set 1, so their processes stay single-threaded),
    else the cores this process may run on."""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS") or len(os.sched_getaffinity(0))))
    except (ValueError, AttributeError):
        return 1


def ordered_map(fn: Callable[[T], R], items: Iterable[T], threads: int | None = None) -> list[R]:
    """[fn(item) for item in items], on `threads` threads (default `default_threads()`); serial for one."""
    items = list(items)
    threads = min(threads or default_threads(), len(items))
    if threads <= 1:
        return [fn(item) for item in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(fn, items))
