"""The synthetic stand-in generator: counts, determinism, idempotence and atomicity."""
import hashlib
import json

import numpy as np
import pytest

from pipelines import demo_data
from pipelines.demo_data import MANIFEST, ensure_demo_data, is_complete


def test_counts_and_manifest(standin_root):
    doc = json.loads((standin_root / MANIFEST).read_text())
    c = doc["counts"]
    assert c["facescape_subjects"] >= 4 and c["facescape_expressions"] >= 3 and c["thuman_scans"] >= 4
    assert c["facescape_images"] >= c["facescape_subjects"] * c["facescape_expressions"] * 20
    for rel, size in doc["files"].items():
        assert (standin_root / rel).stat().st_size == size
    assert (standin_root / "ground_truth" / "facescape" / "1" / "2_smile.npz").is_file()


def test_ground_truth_is_separate_from_the_raw_formats(standin_settings):
    for key in ("facescape_root", "thuman_root", "thuman_smplx_fits", "flame_model_dir", "smplx_model_dir"):
        assert "ground_truth" not in str(getattr(standin_settings, key))


def test_ground_truth_tu_mesh_matches_the_registered_file(standin_settings):
    from storage.meshes import read_obj

    gt = np.load(standin_settings.synthetic_root / "ground_truth" / "facescape" / "3" / "6_jaw_right.npz")
    reg = read_obj(standin_settings.facescape_root / "3" / "models_reg" / "6_jaw_right.obj")
    np.testing.assert_allclose(reg.vertices, gt["tu_vertices"], atol=1e-5)  # OBJ keeps 6 decimals (mm)
    assert gt["flame_vertices"].shape == (1922, 3) and gt["flame_landmarks68"].shape == (68, 3)


def test_idempotent(standin_root):
    report = ensure_demo_data(standin_root, seed=0)
    assert not report.created and report.seconds == 0.0


def _digest(root, pattern):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.glob(pattern))}


@pytest.mark.slow
def test_deterministic_for_a_seed(standin_root, tmp_path):
    again = demo_data.generate_demo_data(tmp_path / "again", seed=0).root
    for pattern in ("facescape/*/*/*.jpg", "facescape/*/*/params.json", "facescape/*/*.ply",
                    "thuman/*/*/*", "body_models/flame/generic_model.pkl", "body_models/smplx/*.npz",
                    "facescape_toolkit/predef/*"):
        assert _digest(standin_root, pattern) == _digest(again, pattern), pattern
    assert json.loads((again / MANIFEST).read_text())["content_hash"] == \
        json.loads((standin_root / MANIFEST).read_text())["content_hash"]


def test_crash_leaves_no_standin_that_looks_complete(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("simulated crash while writing the bilinear model (the FLAME files are already written)")

    monkeypatch.setattr(demo_data, "_write_bilinear_and_toolkit", boom)
    root = tmp_path / "synthetic"
    with pytest.raises(RuntimeError, match="simulated crash"):
        demo_data.generate_demo_data(root, seed=0)
    assert not root.exists() and not is_complete(root, 0)
    assert not list(tmp_path.glob("synthetic.tmp-*"))
