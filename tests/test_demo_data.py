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
    """Also independent of the worker count: the session's stand-in was written by one process per core, this one
    by a single process (each subject draws from its own random stream)."""
    again = demo_data.generate_demo_data(tmp_path / "again", seed=0, workers=1).root
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


def test_larger_standins_follow_facescape_numbering():
    from pipelines.demo_data import DEFAULT_SPEC, StandinSpec

    assert StandinSpec.with_counts() == DEFAULT_SPEC  # the demo's set: 1, 2, 3 and the test subject 122
    ref = StandinSpec.with_counts(64, 64, 4, heldout=0, first_id=4)  # the reference model's set
    assert ref.facescape_subjects[:3] == ("4", "5", "6") and len(set(ref.facescape_subjects)) == 64
    assert not set(ref.facescape_subjects) & set(DEFAULT_SPEC.facescape_subjects)
    assert "122" not in ref.facescape_subjects[:119]  # test ids are skipped for training identities
    assert len(set(ref.thuman_uids)) == 64 and all(int(u) < 2201 for u in ref.thuman_uids)
    assert ref.expression_folders == ("1_neutral", "2_smile", "3_mouth_stretch", "6_jaw_right")
    big = StandinSpec.with_counts(8, 4, 20, heldout=3)
    assert big.facescape_subjects[-3:] == ("122", "212", "326") and big.thuman_uids[-3:] == ("2201", "2202", "2203")
    assert len(big.expression_folders) == 20
    with pytest.raises(ValueError, match="expressions"):
        StandinSpec.with_counts(expressions=21)


def test_identities_differ_in_appearance():
    """Skin, hair colour and shape, brows and eyes vary between identities (the reference model must read them from
    the input image)."""
    from model.standin.appearance import Appearance

    apps = [Appearance.sample(np.random.default_rng([1000, 0, i])) for i in range(64)]
    hair = np.stack([a.hair for a in apps])
    assert np.ptp(np.stack([a.skin for a in apps]).mean(1)) > 0.3 and np.ptp(hair.mean(1)) > 0.4
    assert np.ptp([a.hairline for a in apps]) > 0.2 and np.ptp([a.hair_sides for a in apps]) > 1.0
    assert np.ptp([a.brow_width for a in apps]) > 0.01 and len({a.iris.round(1).tobytes() for a in apps}) > 10
