"""Released checkpoints in: Lightning files read safely (tensors built, everything else inert), imported once into
the store, and usable wherever a checkpoint is taken with bitwise the same result as our own folder."""
import json
import pathlib
from collections import OrderedDict

import numpy as np
import pytest
import torch

from model.diffusion.checkpoints import CheckpointError, read_checkpoint
from model.diffusion.schedule import schedule_arrays
from tests.conftest import TESTDATA


class DictConfig:
    """Pickles like an omegaconf object would: a class the reader must never import."""

    def __init__(self, content):
        self._content = content
        self._metadata = {"flags": {"readonly": False}}


class Trojan:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.fixture(scope="module")
def tiny_state_dict():
    from model.diffusion.config import tiny
    from model.diffusion.network import MorphableDiffusion

    torch.manual_seed(3)
    model = MorphableDiffusion(tiny())
    return {k: v.clone() for k, v in model.state_dict().items()}


def lightning_checkpoint(state_dict, marker=None, zip_format=True, path=None):
    """What PyTorch Lightning writes: state_dict beside optimizer, loops, callbacks and hyper-parameters."""
    doc = {
        "epoch": 7, "global_step": 12000, "pytorch-lightning_version": "1.9.0",
        "state_dict": OrderedDict(state_dict),
        "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 8, "completed": 7}}}},
        "callbacks": {"ModelCheckpoint{'monitor': None}": {"best_model_score": np.float64(0.25),
                                                           "dirpath": pathlib.PosixPath("/ckpt/run"),
                                                           "kth_value": np.int64(3)}},
        "optimizer_states": [{"state": {0: {"step": torch.tensor(12000.0), "exp_avg": torch.randn(4)}},
                              "param_groups": [{"lr": 5e-5, "params": [0]}]}],
        "lr_schedulers": [{"last_epoch": 12000}],
        "hyper_parameters": DictConfig({"view_num": 16, "cfg_scale": 2.0}),
    }
    if marker is not None:
        doc["callbacks"]["Evil"] = Trojan(marker)
    torch.save(doc, path, _use_new_zipfile_serialization=zip_format)
    return path


@pytest.mark.parametrize("zip_format", [True, False])
def test_lightning_checkpoint_reads_its_weights_and_runs_nothing(tiny_state_dict, tmp_path, zip_format):
    marker = tmp_path / "pwned"
    path = lightning_checkpoint(tiny_state_dict, marker, zip_format, tmp_path / "md.ckpt")
    sd = read_checkpoint(path)
    assert not marker.exists()
    assert sd.keys() == tiny_state_dict.keys() and all(torch.equal(sd[k], v) for k, v in tiny_state_dict.items())


def test_bad_checkpoint_files_are_named(tiny_state_dict, tmp_path):
    good = lightning_checkpoint(tiny_state_dict, path=tmp_path / "good.ckpt")
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    text = tmp_path / "notes.ckpt"
    text.write_text("this is a README, not weights\n")
    legacy = lightning_checkpoint(tiny_state_dict, zip_format=False, path=tmp_path / "legacy.ckpt")
    legacy_cut = tmp_path / "legacy_cut.ckpt"
    legacy_cut.write_bytes(legacy.read_bytes()[:-1000])
    for path, message in ((truncated, "cannot be read"), (text, "is a text file"), (legacy_cut, "truncated"),
                          (tmp_path / "missing.ckpt", "not found")):
        with pytest.raises(CheckpointError, match=message) as err:
            read_checkpoint(path)
        assert str(path) in str(err.value)


def test_checkpoint_of_another_architecture_is_refused(tmp_path, model_data):
    from pipelines.import_checkpoint import import_checkpoint

    other = {"encoder.weight": torch.zeros(8, 8), "decoder.bias": torch.zeros(8)}
    torch.save({"state_dict": other}, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="neither a Morphable Diffusion nor a SyncDreamer network"):
        import_checkpoint(model_data, tmp_path / "other.ckpt", log=lambda *_: None)
    with pytest.raises(CheckpointError, match=r"match none of the presets \(paper, tiny, tiny-narrow\)"):
        import_checkpoint(model_data, tmp_path / "other.ckpt", "morphable", log=lambda *_: None)
    with pytest.raises(CheckpointError, match="does not match the model"):
        import_checkpoint(model_data, tmp_path / "other.ckpt", "morphable", preset="tiny", log=lambda *_: None)


class _Out:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def cli(model_data, monkeypatch, capsys):
    """The `morphable` entry point in this process, with the session's store."""
    from pipelines.cli import main

    monkeypatch.setenv("MORPHABLE_SYNTHETIC_ROOT", str(model_data.synthetic_root))
    monkeypatch.setenv("MORPHABLE_DATA_ROOT", str(model_data.data_root))
    monkeypatch.setenv("MORPHABLE_STORAGE_ROOT", str(model_data.storage_root))
    monkeypatch.delenv("MORPHABLE_SETTINGS", raising=False)

    def _run(args, _settings=None):
        code = main(args)
        captured = capsys.readouterr()
        return _Out(code, captured.out, captured.err)

    return _run


def _independent_folder(settings, state_dict) -> pathlib.Path:
    """The test's own reading of the released file: its state dict saved as one of our checkpoint folders."""
    import dataclasses

    from model.diffusion.config import tiny
    from storage.checkpoints import save_checkpoint

    config = {"model": dataclasses.asdict(tiny()), "training": {"dataset": "facescape", "topology": "flame"}}
    return save_checkpoint(settings.storage_root, "written-by-the-test", state_dict, config)


@pytest.mark.numerics
def test_import_then_generate_and_evaluate_from_the_file_equal_an_independent_folder(tiny_state_dict, model_data,
                                                                                     tmp_path, cli):
    ckpt = lightning_checkpoint(tiny_state_dict, tmp_path / "pwned", path=tmp_path / "released.ckpt")
    out = cli(["import-checkpoint", str(ckpt), "--topology", "flame", "--json"], model_data)
    assert out.returncode == 0, out.stderr[-2000:]
    doc = json.loads(out.stdout)
    folder = pathlib.Path(doc["checkpoint"])
    assert doc["preset"] == "tiny" and doc["kind"] == "morphable" and not doc["reused"] \
        and doc["report"]["ignored_unexpected"] == 3  # recognised: the file holds the 3DMM branch
    config = json.loads((folder / "config.json").read_text())
    assert config["imported"]["source"] == "released.ckpt" and config["imported"]["source_sha256"] == \
        doc["source_sha256"] and config["model"]["preset"] == "tiny" and config["training"]["topology"] == "flame"
    again = json.loads(cli(["import-checkpoint", str(ckpt), "--topology", "flame", "--json"], model_data).stdout)
    assert again["reused"] and again["checkpoint"] == doc["checkpoint"]  # imported once per request
    independent = _independent_folder(model_data, tiny_state_dict)
    assert independent.name == folder.name  # the same weights, bit for bit (content-addressed)
    from model.bodies.flame import load_flame_model
    from storage.meshes import Mesh, write_obj

    flame = load_flame_model(model_data.flame_model_dir)
    write_obj(tmp_path / "mesh.obj", Mesh(flame.v_template, flame.faces))
    views = {}
    for label, source in (("file", ckpt), ("independent", independent)):
        gen = cli(["generate", "--checkpoint", str(source), "--image", str(TESTDATA / "stylegan1_256.png"),
                    "--mesh", str(tmp_path / "mesh.obj"), "--out", str(tmp_path / label), "--steps", "2"],
                   model_data)
        assert gen.returncode == 0, gen.stderr[-2000:]
        views[label] = [(tmp_path / label / "views" / f"{i:02d}.png").read_bytes() for i in range(16)]
    assert views["file"] == views["independent"]
    tables = {}
    for label, source in (("file", ckpt), ("independent", independent)):
        ev = cli(["evaluate", "--protocol", "demo", "--checkpoint", str(source), "--steps", "2", "--json"],
                  model_data)
        assert ev.returncode == 0, ev.stderr[-2000:]
        tables[label] = json.loads(ev.stdout)
    assert tables["file"]["psnr"] == tables["independent"]["psnr"]
    assert tables["file"]["checkpoint_hash"] == tables["independent"]["checkpoint_hash"] == folder.name
    assert not (tmp_path / "pwned").exists()


def test_the_import_cache_holds_the_request_and_a_name_holds_one_import(tiny_state_dict, model_data, tmp_path):
    from pipelines.import_checkpoint import import_checkpoint

    ckpt = lightning_checkpoint(tiny_state_dict, path=tmp_path / "md.ckpt")
    quiet = {"log": lambda *_: None}
    flame = import_checkpoint(model_data, ckpt, topology="flame", **quiet)
    bilinear = import_checkpoint(model_data, ckpt, topology="bilinear", **quiet)
    assert not bilinear.reused and bilinear.folder != flame.folder
    topologies = {json.loads((o.folder / "config.json").read_text())["training"]["topology"]
                  for o in (flame, bilinear)}
    assert topologies == {"flame", "bilinear"}
    assert import_checkpoint(model_data, ckpt, topology="bilinear", **quiet).folder == bilinear.folder
    with pytest.raises(CheckpointError, match="already holds an import of md.ckpt .* topology flame") as err:
        import_checkpoint(model_data, ckpt, topology="bilinear", name=flame.folder.parent.name, **quiet)
    assert str(ckpt) in str(err.value) and "--name" in str(err.value)
    other = {k: v + 1 if v.is_floating_point() and k not in SCHEDULE else v for k, v in tiny_state_dict.items()}
    lightning_checkpoint(other, path=tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="already holds an import of md.ckpt"):
        import_checkpoint(model_data, tmp_path / "other.ckpt", name=bilinear.folder.parent.name, **quiet)


SCHEDULE = tuple(schedule_arrays())  # the noise-schedule buffers (shifted by 1 they are no schedule)


@pytest.mark.parametrize("spoil, key", [("schedule", "betas"), ("batchnorm", "running_var"), ("nan", "weight")])
def test_weights_no_trained_network_has_are_a_named_error(tiny_state_dict, model_data, tmp_path, spoil, key):
    """Random buffers imported, then failed deep inside a sampler with a complex-dtype error: now the import names
    the file and the key."""
    from pipelines.import_checkpoint import import_checkpoint

    torch.manual_seed(0)
    bad = dict(tiny_state_dict)
    if spoil == "schedule":
        bad.update({k: torch.randn_like(tiny_state_dict[k]) for k in SCHEDULE})
    elif spoil == "batchnorm":
        bad.update({k: torch.randn_like(v) for k, v in tiny_state_dict.items() if k.endswith(".running_var")})
    else:
        k = next(k for k in tiny_state_dict if k.startswith("model.diffusion_model.") and k.endswith("weight"))
        bad[k] = tiny_state_dict[k].clone()
        bad[k].view(-1)[0] = float("nan")
    path = lightning_checkpoint(bad, path=tmp_path / f"{spoil}.ckpt")
    with pytest.raises(CheckpointError, match=key) as err:
        import_checkpoint(model_data, path, topology="flame", log=lambda *_: None)
    assert str(path) in str(err.value)
    written = [json.loads(c.read_text()).get("imported", {}).get("source")
               for c in pathlib.Path(model_data.storage_root, "checkpoints").glob("*/*/config.json")]
    assert path.name not in written  # nothing of it reached the store


def test_fine_tuning_from_a_morphable_file_keeps_the_3dmm_branch(tiny_state_dict, model_data, tmp_path):
    """train --init <released Morphable Diffusion .ckpt>: every tensor of the file, the 3DMM branch included; a
    SyncDreamer file keeps the release's drop semantics (its volume nets start from the run's initialisation)."""
    from model.diffusion.config import tiny
    from model.diffusion.network import MorphableDiffusion
    from pipelines.train import initialise

    ckpt = lightning_checkpoint(tiny_state_dict, path=tmp_path / "released_morphable.ckpt")
    torch.manual_seed(11)
    model = MorphableDiffusion(tiny())
    report = initialise(model_data, model, ckpt, log=lambda *_: None)
    assert report["kind"] == "morphable" and report["left_at_init"] == 3  # only the unused multi-view buffers
    ours = model.state_dict()
    branch = [k for k in tiny_state_dict if k.startswith(("spatial_volume.xyzc_net.", "spatial_volume.frustum"))]
    assert branch and all(torch.equal(ours[k], tiny_state_dict[k]) for k in branch)
    assert all(torch.equal(ours[k], v) for k, v in tiny_state_dict.items())

    sync = {k: v for k, v in tiny_state_dict.items() if not k.startswith(
        ("spatial_volume.xyzc_net", "spatial_volume.smpl_feature_extractor")) and k not in ("poses", "Ks", "azimuth")}
    lightning_checkpoint(sync, path=tmp_path / "syncdreamer-pretrain.ckpt")
    torch.manual_seed(11)
    fresh = {k: v.clone() for k, v in MorphableDiffusion(tiny()).state_dict().items()}
    torch.manual_seed(11)
    model = MorphableDiffusion(tiny())
    report = initialise(model_data, model, tmp_path / "syncdreamer-pretrain.ckpt", log=lambda *_: None)
    assert report["kind"] == "syncdreamer" and report["dropped_by_filter"] > 0
    ours = model.state_dict()
    for k, v in ours.items():
        left = k.startswith(("spatial_volume.xyzc_net", "spatial_volume.frustum_volume_feats",
                             "spatial_volume.smpl_feature_extractor")) or k in ("poses", "Ks", "azimuth")
        assert torch.equal(v, fresh[k] if left else tiny_state_dict[k]), k


def test_syncdreamer_kind_keeps_the_release_drop_semantics(tiny_state_dict, model_data, tmp_path):
    from pipelines.import_checkpoint import import_checkpoint
    from storage.checkpoints import load_checkpoint

    sync = {k: v if k in SCHEDULE else v + 1 for k, v in tiny_state_dict.items() if not k.startswith(
        ("spatial_volume.xyzc_net", "spatial_volume.smpl_feature_extractor")) and k not in ("poses", "Ks", "azimuth")}
    sync["cc_projection.weight"] = torch.zeros(2, 2)
    lightning_checkpoint(sync, path=tmp_path / "syncdreamer-pretrain.ckpt")
    out = import_checkpoint(model_data, tmp_path / "syncdreamer-pretrain.ckpt", "syncdreamer", log=lambda *_: None)
    assert out.preset == "tiny" and out.report["ignored_unexpected"] == 1 and out.report["dropped_by_filter"] > 0
    tensors, _ = load_checkpoint(out.folder)
    assert torch.equal(tensors["time_embed.0.weight"], tiny_state_dict["time_embed.0.weight"] + 1)
    # dropped by the release's filter: retrained from its initialisation, not taken from the file
    key = "spatial_volume.frustum_volume_feats.conv0.weight"
    assert not torch.equal(tensors[key], tiny_state_dict[key] + 1)
