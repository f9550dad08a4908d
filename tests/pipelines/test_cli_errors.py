"""Every error a user can cause ends in one readable line that names the file and the fix, exit code 2, no
traceback (unless --debug), and no half-written output. Driven through the `morphable` entry point (`main`, in
this process: the console script's code path without an interpreter start per case)."""
import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

from tests.conftest import TESTDATA


@dataclasses.dataclass
class Outcome:
    returncode: int
    stderr: str


@pytest.fixture
def run(monkeypatch, capsys):
    from pipelines.cli import main

    def _run(args, env):
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("MORPHABLE_SETTINGS", raising=False)
        code = main(args)
        return Outcome(code, capsys.readouterr().err)

    return _run


def one_line_error(out) -> str:
    err = out.stderr.strip()
    assert out.returncode == 2, (out.returncode, err[-3000:])
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("morphable: error: ")
    return err


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A face (perspective) and a body (orthographic) tiny checkpoint with random weights."""
    from model.diffusion.config import tiny
    from model.diffusion.network import MorphableDiffusion
    from storage.checkpoints import save_checkpoint

    root = tmp_path_factory.mktemp("ckpts")
    out = {}
    for projection in ("perspective", "orthographic"):
        torch.manual_seed(0)
        model = MorphableDiffusion(tiny(projection))
        out[projection] = save_checkpoint(root, projection, model.state_dict(),
                                          {"model": dataclasses.asdict(model.cfg)})
    return out


@pytest.fixture
def env(standin_root, tmp_path):
    return {"MORPHABLE_SYNTHETIC_ROOT": str(standin_root), "MORPHABLE_DATA_ROOT": str(tmp_path / "data")}


@pytest.fixture(scope="module")
def flame_obj(standin_root, tmp_path_factory):
    from model.bodies.flame import load_flame_model
    from storage.meshes import Mesh, write_obj

    m = load_flame_model(standin_root / "body_models" / "flame")
    path = tmp_path_factory.mktemp("mesh") / "mesh.obj"
    write_obj(path, Mesh(m.v_template, m.faces))
    return path


def _generate(ckpt, image, mesh, out, *extra):
    return ["generate", "--checkpoint", str(ckpt), "--image", str(image), "--mesh", str(mesh), "--out", str(out),
            "--steps", "1", *extra]


def test_non_image_input(run, env, checkpoints, flame_obj, tmp_path):
    bad = tmp_path / "face.png"
    bad.write_text("not an image")
    err = one_line_error(run(_generate(checkpoints["perspective"], bad, flame_obj, tmp_path / "out"), env))
    assert str(bad) in err and "cannot decode image" in err and "Fix:" in err
    assert not (tmp_path / "out").exists()


def test_image_without_a_face_is_refused_unless_asked(run, env, checkpoints, flame_obj, tmp_path):
    from PIL import Image

    flat = tmp_path / "flat.png"
    Image.fromarray(np.full((128, 128, 3), 180, np.uint8)).save(flat)
    err = one_line_error(run(_generate(checkpoints["perspective"], flat, flame_obj, tmp_path / "out"), env))
    assert str(flat) in err and "no face found" in err and "--no-face-check" in err
    assert not (tmp_path / "out").exists()
    ok = run(_generate(checkpoints["perspective"], flat, flame_obj, tmp_path / "out", "--no-face-check"), env)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert len(list((tmp_path / "out" / "views").glob("*.png"))) == 16


def test_flipped_bytes_in_the_weights_are_refused(run, env, checkpoints, flame_obj, tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(checkpoints["perspective"], ckpt)
    weights = ckpt / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    err = one_line_error(run(_generate(ckpt, TESTDATA / "stylegan1_256.png", flame_obj, tmp_path / "out"), env))
    assert str(weights) in err and "differs from the checkpoint's manifest" in err
    assert not (tmp_path / "out").exists()  # a failed command leaves no output folder


def test_edited_config_and_swapped_projection_are_refused(run, env, checkpoints, flame_obj, tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(checkpoints["perspective"], ckpt)
    config = json.loads((ckpt / "config.json").read_text())
    config["model"]["projection"] = "orthographic"
    (ckpt / "config.json").write_text(json.dumps(config))
    err = one_line_error(run(_generate(ckpt, TESTDATA / "stylegan1_256.png", flame_obj, tmp_path / "o1"), env))
    assert str(ckpt / "config.json") in err and "differs from the checkpoint's manifest" in err
    # a genuine body checkpoint used with face cameras
    err = one_line_error(run(_generate(checkpoints["orthographic"], TESTDATA / "stylegan1_256.png", flame_obj,
                                       tmp_path / "o2"), env))
    assert str(checkpoints["orthographic"]) in err and "orthographic-camera model" in err


def test_config_of_another_architecture_names_the_checkpoint_and_keys(run, env, checkpoints, flame_obj, tmp_path):
    from model.diffusion.config import tiny
    from safetensors.torch import load_file
    from storage.checkpoints import save_checkpoint

    other = tiny()
    other = dataclasses.replace(other, unet=dataclasses.replace(other.unet, model_channels=16))
    ckpt = save_checkpoint(tmp_path, "mismatch", load_file(str(checkpoints["perspective"] / "model.safetensors")),
                           {"model": dataclasses.asdict(other)})
    err = one_line_error(run(_generate(ckpt, TESTDATA / "stylegan1_256.png", flame_obj, tmp_path / "out"), env))
    assert str(ckpt) in err and "has shape" in err and "model expects" in err


def test_output_folder_with_other_files_is_never_overwritten(run, env, checkpoints, flame_obj, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    err = one_line_error(run(_generate(checkpoints["perspective"], TESTDATA / "stylegan1_256.png", flame_obj, out),
                             env))
    assert str(out) in err and "choose a new or empty folder" in err
    assert (out / "thesis.tex").read_text() == "precious"


def test_registered_mesh_of_another_topology(run, env, broken_copy, tmp_path):
    from storage.meshes import Mesh, read_obj, write_obj

    path = broken_copy / "facescape" / "1" / "models_reg" / "2_smile.obj"
    mesh = read_obj(path)
    write_obj(path, Mesh(np.concatenate([mesh.vertices, mesh.vertices[:10]]), mesh.faces))  # 10 extra vertices
    env = {**env, "MORPHABLE_SYNTHETIC_ROOT": str(broken_copy)}
    for topology in ("flame", "bilinear"):
        err = one_line_error(run(["track", "--dataset", "facescape", "--subject", "1", "--topology", topology], env))
        assert str(path) in err and f"{len(mesh.vertices) + 10} vertices" in err and "TU topology" in err


def test_trajectory_of_the_wrong_shape(run, env, checkpoints, flame_obj, tmp_path):
    traj = tmp_path / "traj.json"
    traj.write_text(json.dumps({"intrinsics": [np.eye(3).tolist()] * 4, "extrinsics": [np.eye(3, 4).tolist()] * 3}))
    err = one_line_error(run(_generate(checkpoints["perspective"], TESTDATA / "stylegan1_256.png", flame_obj,
                                       tmp_path / "out", "--trajectory", "real", "--trajectory-file", str(traj)), env))
    assert str(traj) in err and "expected (N, 3, 3) / (N, 3, 4)" in err


def test_released_trajectory_pickle_and_its_json_form_give_the_same_cameras(tmp_path):
    from pipelines.generate import real_cameras

    k, rt = real_cameras(TESTDATA / "facescape_test_traj.pkl", 64)
    (tmp_path / "t.json").write_text(json.dumps({"intrinsics": (k / [[0.25], [0.25], [1]]).tolist(),
                                                 "extrinsics": rt.tolist()}))
    k2, rt2 = real_cameras(tmp_path / "t.json", 64)
    np.testing.assert_allclose(k2, k)
    np.testing.assert_array_equal(rt2, rt)
    assert k.shape == (16, 3, 3) and rt.shape == (16, 3, 4)


def test_unsafe_run_name_and_unknown_subject(run, env):
    err = one_line_error(run(["train", "--name", "../../etc", "--steps", "1"], env))
    assert "invalid run name" in err and "Fix:" in err
    err = one_line_error(run(["views", "--dataset", "thuman", "--subject", "../0003"], env))
    assert "invalid subject id" in err


def test_debug_raises_instead_of_one_line(run, env, tmp_path):
    from storage.errors import CorruptFileError

    bad = tmp_path / "face.png"
    bad.write_text("not an image")
    with pytest.raises(CorruptFileError, match="cannot decode image"):  # the console script prints its traceback
        run(["--debug", "fit-image", "--image", str(bad), "--out", str(tmp_path / "fit")], env)
    err = one_line_error(run(["fit-image", "--image", str(bad), "--out", str(tmp_path / "fit")], env))
    assert str(bad) in err
    assert not (tmp_path / "fit").exists()
