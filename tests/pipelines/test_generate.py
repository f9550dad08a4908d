"""Generation with a tiny checkpoint: end to end from the CLI, reproducible, and a NeuS2 export that round-trips."""
import json
import subprocess
import sys

import numpy as np
import pytest

from model.diffusion.ddim import DDIMConfig
from tests.conftest import TESTDATA


@pytest.fixture(scope="module")
def tiny_checkpoint(untrained_tiny_checkpoint):
    return untrained_tiny_checkpoint


@pytest.fixture(scope="module")
def flame_mesh(standin_settings, tmp_path_factory):
    from model.bodies.flame import load_flame_model
    from storage.meshes import Mesh, write_obj

    m = load_flame_model(standin_settings.flame_model_dir)
    path = tmp_path_factory.mktemp("mesh") / "mesh.obj"
    write_obj(path, Mesh(m.v_template, m.faces))
    return path


@pytest.mark.numerics
def test_generation_is_reproducible_and_exports_neus2(standin_settings, tiny_checkpoint, flame_mesh, tmp_path):
    from pipelines.generate import generate

    img = standin_settings.facescape_root / "1" / "1_neutral" / "7.jpg"
    a = generate(standin_settings, tiny_checkpoint, img, tmp_path / "a", mesh=flame_mesh,
                 sampler=DDIMConfig(steps=3, seed=5))
    b = generate(standin_settings, tiny_checkpoint, img, tmp_path / "b", mesh=flame_mesh,
                 sampler=DDIMConfig(steps=3, seed=5))
    assert np.array_equal(a.views, b.views) and a.views.shape == (16, 64, 64, 3)
    doc = json.loads((tmp_path / "a" / "neus2" / "transforms.json").read_text())
    assert len(doc["frames"]) == 16
    for k, frame in enumerate(doc["frames"]):  # frame k <-> camera k <-> view k
        c2w = np.array(frame["transform_matrix"])
        c2w[:3, 1:3] *= -1
        w2c = np.linalg.inv(c2w)[:3]
        np.testing.assert_allclose(w2c, a.RT[k], atol=1e-9)
        np.testing.assert_allclose(frame["intrinsic_matrix"], a.K[k])
        from PIL import Image

        png = np.asarray(Image.open(tmp_path / "a" / "neus2" / frame["file_path"]))
        assert np.array_equal(png[..., :3], a.views[k])


def test_generate_cli_on_a_real_face(standin_root, tiny_checkpoint, tmp_path):
    import os

    image = TESTDATA / "stylegan1_256.png"
    env = {**os.environ, "MORPHABLE_SYNTHETIC_ROOT": str(standin_root), "MORPHABLE_DATA_ROOT": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "pipelines.cli", "generate", "--checkpoint", str(tiny_checkpoint),
                           "--image", str(image), "--out", str(tmp_path / "out"), "--steps", "2"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(list((tmp_path / "out" / "views").glob("*.png"))) == 16
    # no --mesh / --expression: novel views of the input's own expression, FLAME fitted to the input image
    assert (tmp_path / "out" / "expression_fit" / "mesh.obj").is_file()
    assert f"fitting FLAME to {image}" in proc.stdout
    # progress over steps x view batches (16 views in batches of 8)
    assert "sampling 16 views (2 DDIM steps x 2 view batches): 4/4" in proc.stdout, proc.stdout
    # a second run into the same folder replaces the earlier output as a whole
    again = subprocess.run([sys.executable, "-m", "pipelines.cli", "generate", "--checkpoint", str(tiny_checkpoint),
                            "--image", str(image), "--mesh", str(tmp_path / "out" / "expression_fit" / "mesh.obj"),
                            "--out", str(tmp_path / "out"), "--steps", "2"], env=env, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert not (tmp_path / "out" / "expression_fit").exists() and (tmp_path / "out" / "sheet.png").is_file()
