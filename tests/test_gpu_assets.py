"""The GPU-heavy assets: Pipes subprocess, one GPU per step (CPU fallback), metadata, checks."""
import threading
import time

import dagster as dg
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


def test_first_stage_checkpoint_and_eval_set_through_pipes(model_data, monkeypatch, tmp_path):
    """The GPU steps as their assets run them: each in a Pipes worker process (CPU here), reporting metadata and a
    data version, and handing its output reference to the next partition through the IO manager."""
    from assets_defs.definitions import defs
    from assets_defs.evaluation import EVAL_SET_ASSETS
    from assets_defs.training import facescape_checkpoint, facescape_inputs_check, first_stage
    from tests.conftest import TESTDATA

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setenv("MORPHABLE_EXPERIMENTS_FILE", str(TESTDATA / "experiments_smoke.toml"))
    for key in ("SYNTHETIC_ROOT", "DATA_ROOT", "STORAGE_ROOT"):
        monkeypatch.setenv(f"MORPHABLE_{key}", str(getattr(model_data, key.lower())))
    inst = dg.DagsterInstance.ephemeral()
    inst.add_dynamic_partitions("facescape_experiments", ["smoke-facescape"])
    res = dict(defs.resources)
    fs = dg.materialize([first_stage], instance=inst, resources=res)
    meta = fs.asset_materializations_for_node("model__first_stage")[0].metadata
    assert meta["device"].value.startswith("cpu") and "psnr_heldout" in meta and meta["steps"].value == 3
    assert [c.passed for c in fs.get_asset_check_evaluations()] == [False]  # 3 steps: far from its bars, and says so
    ck = dg.materialize([first_stage, facescape_checkpoint, facescape_inputs_check], instance=inst, resources=res,
                        selection=[facescape_checkpoint, facescape_inputs_check], partition_key="smoke-facescape")
    mat = ck.asset_materializations_for_node("facescape__checkpoint")[0]
    assert mat.tags["dagster/data_version"] == mat.metadata["checkpoint_hash"].value
    assert {"loss_curve", "training_views", "tensorboard"} <= set(mat.metadata)
    assert set(mat.metadata["training_views"].value) == {"1", "2", "3"}
    assert [c.passed for c in ck.get_asset_check_evaluations()] == [True]
    gen_asset = EVAL_SET_ASSETS["facescape"]
    es = dg.materialize([first_stage, facescape_checkpoint, gen_asset], instance=inst, resources=res,
                        selection=[gen_asset],
                        partition_key="smoke-facescape|demo")
    gen = es.asset_materializations_for_node("evaluation__facescape__generated")[0]
    assert gen.metadata["checkpoint_hash"].value == mat.metadata["checkpoint_hash"].value
    assert gen.metadata["views"].value == 48 and gen.metadata["sample"].value.startswith("![")
