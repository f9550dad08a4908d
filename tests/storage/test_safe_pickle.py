"""No user file runs code: every pickle-bearing format goes through storage.safe_pickle. The released formats read
(Python-2 chumpy pickles, object .npy / .npz, torch files); a hostile payload in each format, driven through the
command a user would run, is refused with the file named, a non-zero exit and no side effect."""
import pickle
import shutil

import numpy as np
import pytest
import scipy.sparse

from model.standin.legacy_writers import chumpy_array, dump_py2_pickle, old_scipy_csc
from storage.safe_pickle import (Placeholder, UnsafePickleError, load_npy, load_npz, load_pickle, load_torch)


class Trojan:
    """Unpickling this with the plain pickle module creates `marker` (as a real attack would run a command)."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_python2_chumpy_pickle_reads_with_the_remapping(tmp_path):
    rng = np.random.default_rng(0)
    shapedirs = rng.normal(size=(7, 3, 4))
    jreg = scipy.sparse.random(5, 7, density=0.4, random_state=1)
    path = tmp_path / "generic_model.pkl"
    dump_py2_pickle({"shapedirs": chumpy_array(shapedirs), "J_regressor": old_scipy_csc(jreg),
                     "kintree_table": np.array([[4294967295, 0], [0, 1]], np.uint32)}, path)
    raw = path.read_bytes()
    assert b"chumpy.ch\nCh" in raw and b"scipy.sparse.csc\ncsc_matrix" in raw and b"numpy.core.multiarray" in raw
    for kwargs in ({}, {"encoding": "latin1"}):  # like the real file, a plain Python-3 load fails
        with pytest.raises((UnicodeDecodeError, ModuleNotFoundError)):
            pickle.loads(raw, **kwargs)
    data = load_pickle(path)
    np.testing.assert_array_equal(data["shapedirs"], shapedirs)
    np.testing.assert_array_equal(data["J_regressor"].toarray(), jreg.toarray())
    assert data["kintree_table"][0, 0] == 4294967295


def test_object_npy_and_npz_read_through_the_allow_list(tmp_path):
    torch = pytest.importorskip("torch")
    d = {"idx": np.arange(3), "dyn": torch.arange(6).reshape(2, 3), "bary": torch.rand(2, 3, 3)}
    np.save(tmp_path / "e.npy", np.array(d, dtype=object), allow_pickle=True)
    out = load_npy(tmp_path / "e.npy")
    np.testing.assert_array_equal(out["dyn"], d["dyn"].numpy())
    np.testing.assert_allclose(out["bary"], d["bary"].numpy())
    np.savez(tmp_path / "m.npz", plain=np.eye(3), names=np.array({"a": 1}, dtype=object))
    z = load_npz(tmp_path / "m.npz")
    np.testing.assert_array_equal(z["plain"], np.eye(3))
    assert z["names"] == {"a": 1}


@pytest.mark.parametrize("writer", ["pickle", "npy", "npz", "torch"])
def test_a_trojan_is_refused_in_every_container(tmp_path, writer):
    torch = pytest.importorskip("torch")
    marker = tmp_path / "pwned"
    payload = {"v_template": np.zeros((3, 3)), "trojan": Trojan(marker)}
    path = tmp_path / f"evil.{writer}"
    if writer == "pickle":
        path.write_bytes(pickle.dumps(payload, protocol=2))
        read = load_pickle
    elif writer == "npy":
        np.save(path, np.array(payload, dtype=object), allow_pickle=True)
        read = load_npy
    elif writer == "npz":
        np.savez(path, ok=np.zeros(2), trojan=np.array([Trojan(marker)], dtype=object))
        read = load_npz
    else:
        torch.save(payload, path)
        read = load_torch
    with pytest.raises(UnsafePickleError, match=r"global io\.open") as err:
        read(path)
    assert not marker.exists()
    assert path.name in str(err.value)


def test_placeholders_keep_what_the_file_gave_and_run_nothing(tmp_path):
    torch = pytest.importorskip("torch")
    marker = tmp_path / "pwned"
    torch.save({"w": torch.arange(4.0), "cb": Trojan(marker), "n": np.float64(0.5)}, tmp_path / "x.pt")
    obj = load_torch(tmp_path / "x.pt", placeholders=True)
    assert isinstance(obj["cb"], Placeholder) and obj["cb"].args == (str(marker), "w")
    assert (obj["cb"].module, obj["cb"].name) == ("io", "open")
    assert not marker.exists() and obj["n"] == 0.5 and torch.equal(obj["w"], torch.arange(4.0))


# ---------------------------------------------------------------------------------------------------------------
# every format, through the command a user runs


def _cli(args, env, monkeypatch, capsys):
    """The `morphable` entry point in this process (same code path as the console script; no interpreter start)."""
    from pipelines.cli import main

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("MORPHABLE_SETTINGS", raising=False)
    code = main(args)
    return code, capsys.readouterr().err


def _copy_flame(standin_root, dst, deca=True):
    shutil.copytree(standin_root / "body_models" / "flame", dst)
    if not deca:
        (dst / "landmark_embedding.npy").unlink()
    return dst


def _with_trojan_pkl(src, dst, marker):
    data = load_pickle(src)
    data["trojan"] = Trojan(marker)
    dst.write_bytes(pickle.dumps(data, protocol=2))


def _with_trojan_npz(src, dst, marker):
    arrays = load_npz(src)
    arrays = {k: v for k, v in arrays.items() if isinstance(v, np.ndarray) and v.dtype != object}
    np.savez(dst, **arrays, trojan=np.array([Trojan(marker)], dtype=object))


def _with_trojan_npy(src, dst, marker):
    data = load_npy(src)
    data["trojan"] = Trojan(marker)
    np.save(dst, np.array(data, dtype=object), allow_pickle=True)


def _case(name, standin_root, tmp_path, marker):
    """(cli args, extra env, the hostile file) for one format."""
    bm = standin_root / "body_models"
    if name == "flame_model":
        flame = _copy_flame(standin_root, tmp_path / "flame")
        _with_trojan_pkl(bm / "flame" / "generic_model.pkl", flame / "generic_model.pkl", marker)
        return ["validate", "--body-models"], {"MORPHABLE_FLAME_MODEL_DIR": str(flame)}, flame / "generic_model.pkl"
    if name == "flame_static_embedding":
        flame = _copy_flame(standin_root, tmp_path / "flame", deca=False)
        evil = flame / "flame_static_embedding.pkl"
        _with_trojan_pkl(bm / "flame" / "flame_static_embedding.pkl", evil, marker)
        return ["validate", "--body-models"], {"MORPHABLE_FLAME_MODEL_DIR": str(flame)}, evil
    if name in ("flame_dynamic_embedding", "deca_embedding"):
        flame = _copy_flame(standin_root, tmp_path / "flame", deca=name == "deca_embedding")
        file = "landmark_embedding.npy" if name == "deca_embedding" else "flame_dynamic_embedding.npy"
        _with_trojan_npy(bm / "flame" / file, flame / file, marker)
        return ["validate", "--body-models"], {"MORPHABLE_FLAME_MODEL_DIR": str(flame)}, flame / file
    if name == "smplx_npz":
        folder = tmp_path / "smplx"
        folder.mkdir()
        _with_trojan_npz(bm / "smplx" / "SMPLX_NEUTRAL.npz", folder / "SMPLX_NEUTRAL.npz", marker)
        return ["validate", "--body-models"], {"MORPHABLE_SMPLX_MODEL_DIR": str(folder)}, folder / "SMPLX_NEUTRAL.npz"
    if name == "bilinear_npz":
        src = next((standin_root / "facescape_bm").rglob("*.npz"))
        evil = tmp_path / src.name
        _with_trojan_npz(src, evil, marker)
        return ["validate", "--body-models"], {"MORPHABLE_FACESCAPE_BILINEAR_MODEL": str(evil)}, evil
    if name == "thuman_fit":
        fits = tmp_path / "fits"
        shutil.copytree(standin_root / "thuman" / "smplx", fits)
        evil = fits / "0003" / "smplx_param.pkl"
        data = load_pickle(evil)
        data["trojan"] = Trojan(marker)
        evil.write_bytes(pickle.dumps(data, protocol=2))
        return ["track", "--dataset", "thuman", "--subject", "0003"], {"MORPHABLE_THUMAN_SMPLX_FITS": str(fits)}, evil
    if name == "trajectory":
        evil = tmp_path / "traj.pkl"
        evil.write_bytes(pickle.dumps({"intrinsics": [np.eye(3)] * 16, "extrinsics": [np.eye(3, 4)] * 16,
                                       "trojan": Trojan(marker)}))
        return ["generate", "--checkpoint", str(tmp_path / "no_checkpoint"), "--image", str(tmp_path / "x.png"),
                "--mesh", str(tmp_path / "x.obj"), "--out", str(tmp_path / "out"), "--trajectory", "real",
                "--trajectory-file", str(evil)], {}, evil
    raise KeyError(name)


FORMATS = ["flame_model", "flame_static_embedding", "flame_dynamic_embedding", "deca_embedding", "smplx_npz",
           "bilinear_npz", "thuman_fit", "trajectory"]


@pytest.mark.parametrize("name", FORMATS)
def test_hostile_file_in_each_format_is_refused_by_the_cli(name, standin_root, tmp_path, monkeypatch, capsys):
    marker = tmp_path / "pwned"
    args, env, evil = _case(name, standin_root, tmp_path, marker)
    env = {"MORPHABLE_SYNTHETIC_ROOT": str(standin_root), "MORPHABLE_DATA_ROOT": str(tmp_path / "data"), **env}
    code, err = _cli(args, env, monkeypatch, capsys)
    assert code == 2
    assert not marker.exists(), "the payload ran"
    err = err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert str(evil) in err and "refusing to load global io.open" in err, err
