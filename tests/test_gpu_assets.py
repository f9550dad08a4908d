"""GPU slots: one GPU per step, CPU fallback. (The GPU steps' Pipes processes, metadata and references are asserted
from the event log of the policy's instance: tests/test_policy.py.)"""
import threading
import time

import pytest

from assets_defs.gpu_steps import gpu_slots


def test_gpu_slots_are_exclusive_and_cpu_falls_back(monkeypatch, tmp_path):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with gpu_slots() as slots:
        assert slots == []
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5,6")
    held = []
    with gpu_slots() as a, gpu_slots() as b:
        held += a + b
        with pytest.raises(TimeoutError):  # 2 of 3 are taken: a 2-GPU step waits, and takes none meanwhile
            with gpu_slots(2, poll_seconds=0.05, timeout_seconds=0.2):
                pass
        with gpu_slots() as c:
            assert c == [2]
        got = []
        waiter = threading.Thread(target=lambda: got.append(gpu_slots(3, poll_seconds=0.05).__enter__()))
        waiter.start()
        time.sleep(0.2)
        assert not got  # still waiting for all three
    waiter.join(5)
    assert sorted(held) == [0, 1] and got == [[0, 1, 2]]
    with pytest.raises(ValueError, match="only 3 visible"):
        with gpu_slots(4):
            pass
