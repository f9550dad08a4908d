"""Checkpoint import: the released SyncDreamer drop semantics, strict MD loading, weights-only reading."""
import pickle

import pytest
import torch

from model.diffusion.checkpoints import (CheckpointError, import_morphable, import_syncdreamer, read_checkpoint,
                                         syncdreamer_keeps)
from model.diffusion.config import tiny
from model.diffusion.network import MorphableDiffusion
from model.diffusion.schedule import schedule_arrays
from tests.model.test_network import read_manifest


class _KeyOnly(torch.nn.Module):
    """A module whose state dict has exactly the manifest's keys, on the meta device (no memory)."""

    def __init__(self, manifest: dict) -> None:
        super().__init__()
        for i, (k, v) in enumerate(manifest.items()):
            self.register_buffer(f"b{i}", torch.empty(v["shape"], device="meta",
                                                      dtype=getattr(torch, v["dtype"])))
        self._names = {f"b{i}": k for i, k in enumerate(manifest)}

    def state_dict(self, *a, **kw):  # noqa: D401 - the manifest's names
        return {self._names[k]: v for k, v in super().state_dict(*a, **kw).items()}


def test_syncdreamer_import_reports_exactly_the_released_semantics(monkeypatch):
    sd_manifest = read_manifest("syncdreamer")
    md_manifest = read_manifest("morphable_diffusion_facescape")
    report = read_manifest("finetune_load_report")
    ckpt = {k: torch.empty(v["shape"], device="meta") for k, v in sd_manifest.items()}
    model = _KeyOnly(md_manifest)
    monkeypatch.setattr("model.diffusion.checkpoints._strict_load", lambda *a: None)  # keys only, no memory
    rep = import_syncdreamer(model, ckpt)
    assert sorted(rep.dropped_by_filter) == sorted(report["dropped_by_filter"])
    assert sorted(rep.ignored_unexpected) == sorted(report["unexpected_keys"])
    released_missing = set(report["missing_keys"]) | set(report["keys_added_by_init_multiview"])
    ours = {k for k in rep.left_at_init if not k.endswith("num_batches_tracked")}  # BatchNorm fills them silently
    assert ours == released_missing
    assert len(rep.loaded) == report["n_keys_passed"] - len(report["unexpected_keys"])
    assert all(syncdreamer_keeps(k) for k in rep.loaded)


SCHEDULE = tuple(schedule_arrays())  # the noise-schedule buffers (shifted by 1 they are no schedule)


def test_tiny_checkpoints_round_trip_strictly(tmp_path):
    torch.manual_seed(0)
    a, b = MorphableDiffusion(tiny()), MorphableDiffusion(tiny())
    sd = {k: v.clone() for k, v in a.state_dict().items()}
    torch.save({"state_dict": sd, "global_step": 3}, tmp_path / "md.ckpt")
    rep = import_morphable(b, read_checkpoint(tmp_path / "md.ckpt"))
    assert rep.ignored_unexpected == ["Ks", "azimuth", "poses"]
    for k, v in b.state_dict().items():
        torch.testing.assert_close(v, sd[k])
    # a SyncDreamer-style checkpoint of the tiny preset: its spatial_volume parts other than the encoder are dropped
    sync = {k: v if k in SCHEDULE else v + 1 for k, v in sd.items() if not k.startswith(("spatial_volume.xyzc_net",
                                                                 "spatial_volume.smpl_feature_extractor"))
            and k not in ("poses", "Ks", "azimuth")}
    sync["cc_projection.weight"] = torch.zeros(2, 2)
    c = MorphableDiffusion(tiny())
    before = {k: v.clone() for k, v in c.state_dict().items()}
    rep = import_syncdreamer(c, sync)
    after = c.state_dict()
    assert torch.equal(after["time_embed.0.weight"], sd["time_embed.0.weight"] + 1)
    assert torch.equal(after["spatial_volume.frustum_volume_feats.conv0.weight"],
                       before["spatial_volume.frustum_volume_feats.conv0.weight"])  # dropped: retrained
    assert "cc_projection.weight" in rep.ignored_unexpected


def test_mismatches_and_unsafe_files_are_refused(tmp_path):
    model = MorphableDiffusion(tiny())
    sd = dict(model.state_dict())
    del sd["time_embed.0.weight"]
    with pytest.raises(CheckpointError, match="missing"):
        import_morphable(model, sd)
    sd = dict(model.state_dict(), **{"time_embed.0.weight": torch.zeros(3, 3)})
    with pytest.raises(CheckpointError, match="shape"):
        import_morphable(model, sd)

    class Evil:
        def __reduce__(self):
            import os

            return os.system, ("echo pwned",)

    (tmp_path / "evil.ckpt").write_bytes(pickle.dumps({"state_dict": Evil()}))
    with pytest.raises(CheckpointError, match="refusing to load global posix.system"):  # a bare pickle: refused
        read_checkpoint(tmp_path / "evil.ckpt")
    torch.save({"state_dict": {"w": torch.zeros(2), "evil": Evil()}}, tmp_path / "evil2.ckpt")
    with pytest.raises(CheckpointError, match="not tensors"):  # read inertly, then refused by name
        read_checkpoint(tmp_path / "evil2.ckpt")
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "none.ckpt")
