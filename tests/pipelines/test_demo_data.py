"""The synthetic stand-in generator: counts, determinism, idempotence and atomicity."""
import json
import subprocess
import sys

import numpy as np
import pytest

from pipelines import demo_data
from pipelines.demo_data import MANIFEST, ensure_demo_data, is_complete
from storage.hashing import hash_file, hash_json
from tests.conftest import REPO, TESTDATA
from tests.other_cpu import OLD_CPU_ONE_THREAD, environment


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


@pytest.mark.slow
def test_the_same_bytes_on_another_cpu_with_other_threads_and_workers(standin_root, tmp_path):
    """The session's stand-in was written natively by one single-threaded process per core; this one by a single
    process computing like an SSE4.2-only CPU (torch, oneDNN, MKL, OpenBLAS, numpy, glibc's libm, libjpeg-turbo and
    OpenCV capped, one thread). Every file must be byte-identical: the stand-in is a function of its seed."""
    script = ("import sys; from pipelines.demo_data import generate_demo_data; "
              "generate_demo_data(sys.argv[1], seed=0, workers=1)")
    again = tmp_path / "again"
    proc = subprocess.run([sys.executable, "-c", script, str(again)], cwd=REPO, capture_output=True, text=True,
                          env=environment(OLD_CPU_ONE_THREAD), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ours, theirs = (json.loads((root / MANIFEST).read_text()) for root in (standin_root, again))
    assert theirs["sha256"].keys() == ours["sha256"].keys()
    differing = sorted(k for k in ours["sha256"] if ours["sha256"][k] != theirs["sha256"][k])
    assert not differing, differing[:20]
    assert theirs["content_hash"] == ours["content_hash"]
    for rel, digest in list(ours["sha256"].items())[::37]:  # the manifest describes the files on disk
        assert hash_file(standin_root / rel) == digest, rel


@pytest.mark.slow
@pytest.mark.numerics
def test_the_committed_generator_writes_the_reference_models_standin(tmp_path):
    """The shipped reference model was trained on a stand-in whose content hash its recipe records; the first
    identity and the first scan of that stand-in, written again by this generator, must have the digests copied from
    its manifest at training time (a generator change that alters them means retraining the reference)."""
    pinned = json.loads((TESTDATA / "reference_standin_digests.json").read_text())
    recipe = json.loads((REPO / "pretrained" / "tiny-facescape-reference" / "recipe.json").read_text())
    assert recipe["data"]["standin_content_hash"] == pinned["standin_content_hash"]
    assert recipe["data"]["seed"] == pinned["seed"]
    spec = demo_data.StandinSpec((pinned["facescape_subject"],), (pinned["thuman_uid"],), pinned["expressions"])
    assert spec.facescape_subjects[0] == recipe["data"]["spec"]["facescape_subjects"][0]
    assert spec.thuman_uids[0] == recipe["data"]["spec"]["thuman_uids"][0]
    demo_data.generate_demo_data(tmp_path, seed=pinned["seed"], spec=spec, workers=1)
    written = json.loads((tmp_path / MANIFEST).read_text())["sha256"]
    alignment = "facescape_toolkit/predef/Rt_scale_dict.json"  # (lists every identity of a stand-in: compared by entry)
    assert set(written) - {alignment} == set(pinned["sha256"])
    differing = sorted(k for k, digest in pinned["sha256"].items() if written[k] != digest)
    assert not differing, differing[:20]
    assert json.loads((tmp_path / alignment).read_text()) == pinned["alignment"]


def test_manifest_hash_covers_file_contents(standin_root):
    doc = json.loads((standin_root / MANIFEST).read_text())
    assert doc["content_hash"] == hash_json(doc["sha256"]) and set(doc["sha256"]) == set(doc["files"])
    assert all(len(d) == 64 for d in doc["sha256"].values())


def test_torch_tensors_in_the_deca_embedding_are_written_without_memory_addresses(standin_root):
    """DECA's landmark_embedding.npy holds pickled torch tensors; torch names their storages by memory address,
    which made the file differ run to run. The stand-in's copy reads back through the safe reader."""
    from storage.safe_pickle import load_npy

    raw = (standin_root / "body_models" / "flame" / "landmark_embedding.npy").read_bytes()
    assert raw.count(b"X\x01\x00\x00\x000q\x02X\x03\x00\x00\x00cpu") == 2  # both tensors' storages named "0"
    data = load_npy(standin_root / "body_models" / "flame" / "landmark_embedding.npy")
    assert tuple(data["dynamic_lmk_faces_idx"].shape) == (79, 17)
    assert tuple(data["dynamic_lmk_bary_coords"].shape) == (79, 17, 3)


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
