from pathlib import Path

import pytest

from pipelines.settings import PATH_KEYS, SettingsError, load_settings


def test_embedded_default_points_everything_at_the_synthetic_standin(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = load_settings(env={})
    assert s.source == "embedded default"
    assert s.synthetic_root == tmp_path / ".morphable" / "synthetic"
    for key in ("facescape_root", "thuman_root", "thuman_smplx_fits", "flame_model_dir", "smplx_model_dir",
                "facescape_rt_scale_dict", "facescape_bilinear_model"):
        assert str(getattr(s, key)).startswith(str(s.synthetic_root)), key
    assert s.uses_synthetic_data
    assert s.syncdreamer_checkpoint is None and s.metric_weights_dir is None


def test_file_then_environment_override(tmp_path):
    cfg = tmp_path / "conf" / "morphable.toml"
    cfg.parent.mkdir()
    cfg.write_text('[paths]\ndata_root = "../d"\nfacescape_root = "/data/fs"\n'
                   'syncdreamer_checkpoint = "ckpt/sd.ckpt"\n[synthetic]\nseed = 5\n')
    s = load_settings(cfg, env={"MORPHABLE_FACESCAPE_ROOT": "/env/fs", "MORPHABLE_SYNTHETIC_SEED": "7"})
    assert s.data_root == (tmp_path / "d").resolve()  # relative to the settings file's folder
    assert s.facescape_root == Path("/env/fs")  # the environment wins over the file
    assert s.syncdreamer_checkpoint == (cfg.parent / "ckpt" / "sd.ckpt").resolve()
    assert s.synthetic_seed == 7
    assert s.storage_root == (tmp_path / "d" / "store").resolve()  # placeholders follow data_root
    assert not s.uses_synthetic_data or s.thuman_root.is_relative_to(s.synthetic_root)
    assert set(s.overridden) >= {"facescape_root", "synthetic_seed", "data_root"}


def test_every_path_key_has_an_environment_variable(tmp_path):
    env = {f"MORPHABLE_{k.upper()}": str(tmp_path / k) for k in PATH_KEYS}
    s = load_settings(env=env)
    for key in PATH_KEYS:
        assert getattr(s, key) == tmp_path / key


def test_bad_settings_are_named(tmp_path):
    bad = tmp_path / "morphable.toml"
    bad.write_text("[paths]\nfacescape_rot = '/x'\n")
    with pytest.raises(SettingsError, match="facescape_rot"):
        load_settings(bad, env={})
    bad.write_text("[paths\n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(bad, env={})
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "missing.toml", env={})
    with pytest.raises(SettingsError, match="synthetic_seed"):
        load_settings(env={"MORPHABLE_SYNTHETIC_SEED": "abc"})


def test_example_settings_file_is_valid():
    example = Path(__file__).resolve().parents[2] / "morphable.example.toml"
    s = load_settings(example, env={})
    assert s.source == str(example)
