"""GPU slots: one GPU per step, CPU fallback; a CPU step in its worker or in process. (The GPU steps' metadata and
references, from the event log of the policy's instance: tests/assets_defs/test_policy.py.)"""
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


def _worker_asset(name: str, script: str):
    import sys

    import dagster as dg

    from assets_defs.gpu_steps import run_worker_process

    @dg.asset(name=name)
    def worker_step(context: dg.AssetExecutionContext):
        invocation = run_worker_process(context, dg.PipesSubprocessClient(), [sys.executable, "-c", script], {}, {})
        return invocation.get_materialize_result()

    return worker_step


def _retries(result) -> int:
    return sum(1 for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY")


def test_a_killed_worker_is_retried_and_a_failing_one_is_reported_once(tmp_path, monkeypatch):
    """A worker ended by a signal (killed, out of memory, preempted) is transient: the step runs again in its run.
    A worker that fails on its own (bad data, a bug) is deterministic: one failure, no retry."""
    import dagster as dg

    from assets_defs import gpu_steps
    from assets_defs.gpu_steps import TRANSIENT_RETRIES

    monkeypatch.setattr(gpu_steps, "RETRY_WAIT_SECONDS", 0)
    marker = tmp_path / "killed_once"
    killed_once = (f"import os, pathlib, signal\nm = pathlib.Path({str(marker)!r})\nif not m.exists():\n"
                   "    m.write_text('x'); os.kill(os.getpid(), signal.SIGKILL)\n"
                   "from dagster_pipes import open_dagster_pipes\n"
                   "with open_dagster_pipes() as pipes:\n    pipes.report_asset_materialization(metadata={'ok': 1})\n")
    with dg.instance_for_test() as instance:
        result = dg.materialize([_worker_asset("flaky", killed_once)], instance=instance)
        assert result.success and marker.is_file() and _retries(result) == 1
        always_killed = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
        result = dg.materialize([_worker_asset("doomed", always_killed)], instance=instance, raise_on_error=False)
        assert not result.success and _retries(result) == TRANSIENT_RETRIES  # bounded
        broken = "raise SystemExit('bad input file: /data/x.obj')"
        result = dg.materialize([_worker_asset("broken", broken)], instance=instance, raise_on_error=False)
        assert not result.success and _retries(result) == 0
        failure = next(e for e in result.all_events if e.is_step_failure)
        assert "failed with code 1" in failure.step_failure_data.error.to_string()


@pytest.mark.parametrize("mode", ["worker", "in_process"])
def test_a_cpu_step_reports_the_same_in_its_worker_and_in_process(mode, monkeypatch, tmp_path):
    """On a machine without a GPU a GPU-heavy step runs in the step's process by default, or in the Pipes worker
    with MORPHABLE_CPU_STEPS=worker: the same task, the same metadata and data version (here the import of a
    shipped checkpoint folder, the quickest task)."""
    import dagster as dg

    from assets_defs.gpu_steps import run_gpu_task
    from tests.conftest import REPO

    folder = REPO / "pretrained" / "tiny-facescape-reference"
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setenv("MORPHABLE_CPU_STEPS", mode)
    monkeypatch.delenv("MORPHABLE_SETTINGS", raising=False)

    @dg.asset(name=f"imported_{mode}")
    def imported(context: dg.AssetExecutionContext):
        return run_gpu_task(context, "import", {"file": str(folder), "projection": "perspective"})

    with dg.instance_for_test() as instance:
        result = dg.materialize([imported], instance=instance)
        event = result.get_asset_materialization_events()[0].step_materialization_data.materialization
        logs = [e.message for e in instance.all_logs(result.run_id) if e.message]
    from storage.checkpoints import checkpoint_hash

    assert event.metadata["dagster/uri"].value == str(folder) and event.metadata["imported"].value is False
    assert event.metadata["checkpoint_hash"].value == checkpoint_hash(folder) == event.tags["dagster/data_version"]
    started = [m for m in logs if m.startswith("import: CPU (no GPU)")]
    assert len(started) == 1 and ("in the step's process" in started[0]) == (mode == "in_process")


def test_an_unknown_cpu_step_mode_is_refused(monkeypatch):
    from assets_defs.gpu_steps import cpu_steps_in_process

    monkeypatch.setenv("MORPHABLE_CPU_STEPS", "threads")
    with pytest.raises(ValueError, match="in_process or worker"):
        cpu_steps_in_process()
