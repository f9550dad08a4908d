"""Training on the stand-in (tiny, THuman views): loss goes down, and resume is exact."""
import pytest
import torch
from safetensors.torch import load_file

from pipelines.track import track
from pipelines.train import TrainConfig, train
from pipelines.views import views
from tests.conftest import settings_for


@pytest.fixture(scope="module")
def train_settings(standin_root, tmp_path_factory):
    s = settings_for(standin_root, tmp_path_factory.mktemp("train"))
    for uid in ("0003", "0526", "1024"):
        track(s, "thuman", uid)
        views(s, "thuman", uid)
    return s


def _weights(result):
    last = (result.run_dir / "last").read_text().strip()
    return load_file(str(result.run_dir / "checkpoints" / last / "model.safetensors"))


def test_resume_is_bitwise_exact(train_settings):
    base = dict(preset="tiny", dataset="thuman", batch_size=1, warmup_steps=2)
    full = train(train_settings, TrainConfig(steps=4, ckpt_every=4, name="full", **base), log=lambda *_: None)
    part = train(train_settings, TrainConfig(steps=2, ckpt_every=2, name="split", **base), log=lambda *_: None)
    resumed = train(train_settings, TrainConfig(steps=4, ckpt_every=2, name="split", **base), resume=True,
                    log=lambda *_: None)
    assert part.step == 2 and resumed.step == 4
    assert resumed.losses == full.losses
    a, b = _weights(full), _weights(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_loss_decreases(train_settings):
    res = train(train_settings, TrainConfig(preset="tiny", dataset="thuman", steps=40, batch_size=2,
                                            warmup_steps=5, ckpt_every=40, name="curve"), log=lambda *_: None)
    first, last = sum(res.losses[:10]) / 10, sum(res.losses[-10:]) / 10
    assert last < 0.9 * first, (first, last)
