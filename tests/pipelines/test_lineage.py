"""Lineage pieces without a Dagster run: an earlier checkpoint named by its content hash (the store's listing, the
experiments file's `checkpoint = "<hash>"`, `morphable checkpoints`), and experiment digests that stay what they
were before that key existed (they name partitions' data versions and evaluation sets). The graph's use of both:
tests/assets_defs/test_policy.py; what a protocol reads from the view stores: tests/pipelines/test_eval_sets.py."""
import json
import os
import subprocess
import sys

import pytest

from pipelines.experiments import load_experiments
from storage.checkpoints import find_checkpoint, list_checkpoints, save_checkpoint
from storage.errors import InvalidContentError, MissingFileError
from tests.conftest import REPO, TESTDATA

PUBLISHED = '''
[experiments.{name}]
kind = "published"
dataset = "facescape"
topology = "flame"
{body}
'''


def _experiments(tmp_path, name: str = "pinned", body: str = 'checkpoint = "0123456789abcdef"'):
    path = tmp_path / "experiments.toml"
    path.write_text((TESTDATA / "experiments_smoke.toml").read_text() + PUBLISHED.format(name=name, body=body))
    return path


def test_experiment_digests_are_unchanged_by_the_checkpoint_key(tmp_path):
    """Digests recorded with the code before `checkpoint` existed (commit 972f911): the same definitions keep them,
    so nothing in an existing instance is re-run or renamed by the upgrade."""
    path = _experiments(tmp_path, "released", 'file = "/data/released.ckpt"')
    digests = {k: v.digest() for k, v in load_experiments(path).experiments.items()}
    assert digests == {"smoke-facescape": "2b24b5ed1171d0fb", "smoke-thuman": "f7b464aa6ff03180",
                       "copy-input-facescape": "a9dd52434853359e", "released": "2a4bf502f42c75b9"}


def test_animations_are_declared_by_name_and_leave_the_experiment_digest_alone(tmp_path):
    """`animations` and `animation` version the animation assets only: the smoke file declares one, and its
    digests above are those recorded before the keys existed."""
    exp = load_experiments(_experiments(tmp_path, body='checkpoint = "0123456789abcdef"\n'
                                                       'animations = ["heldout_jaw_sweep"]\n'
                                                       'animation = { mode = "warm_start", strength = 0.3 }'))
    pinned = exp.get("pinned")
    assert pinned.animations == ("heldout_jaw_sweep",) and pinned.animation.mode == "warm_start"
    assert exp.get("smoke-facescape").animations == ("heldout_smile",) and exp.get("smoke-thuman").animations == ()
    assert pinned.digest() == load_experiments(_experiments(tmp_path)).get("pinned").digest()
    for body, message in (('checkpoint = "0123456789abcdef"\nanimations = ["no_such_sequence"]', "animations"),
                          ('checkpoint = "0123456789abcdef"\nanimations = "heldout_smile"', "list of sequence"),
                          ('checkpoint = "0123456789abcdef"\nanimation = { mode = "slow" }', "animation mode")):
        with pytest.raises(InvalidContentError, match=message) as err:
            load_experiments(_experiments(tmp_path, body=body))
        assert "[experiments.pinned]" in str(err.value)


def test_a_published_experiment_names_a_file_or_a_hash(tmp_path):
    pinned = load_experiments(_experiments(tmp_path)).get("pinned")
    assert pinned.checkpoint == "0123456789abcdef" and pinned.file is None
    assert pinned.digest() != load_experiments(_experiments(tmp_path, body='checkpoint = "0123456789abcdee"')) \
        .get("pinned").digest()  # another hash, another experiment version
    for body, message in (("", "needs file = .* or checkpoint"),
                          ('file = "x.ckpt"\ncheckpoint = "0123456789abcdef"', "one of them"),
                          ('checkpoint = "0123ABCD"', "not a content hash"),
                          ('checkpoint = "0123"', "not a content hash"),
                          ('checkpoint = "../../etc/passwd"', "not a content hash")):
        with pytest.raises(InvalidContentError, match=message) as err:
            load_experiments(_experiments(tmp_path, body=body))
        assert "experiments.toml" in str(err.value) and "[experiments.pinned]" in str(err.value)


def _store(tmp_path):
    import torch

    root = tmp_path / "data" / "store"
    a = save_checkpoint(root, "run-a", {"w": torch.zeros(3)}, {"model": {}})
    b = save_checkpoint(root, "run-b", {"w": torch.ones(3)}, {"model": {}})
    os.utime(a / "manifest.json", (1_700_000_000, 1_700_000_000))  # a is the earlier one
    (root / "checkpoints" / "run-a" / ".tmp-partial").mkdir()  # an interrupted write is not listed
    return root, a, b


def test_the_store_lists_and_finds_checkpoints_by_hash(tmp_path):
    root, a, b = _store(tmp_path)
    listed = list_checkpoints(root)
    assert [(c["name"], c["hash"]) for c in listed] == [("run-a", a.name), ("run-b", b.name)]
    assert listed[0]["written"] == "2023-11-14T22:13:20+00:00"
    assert find_checkpoint(root, a.name) == a and find_checkpoint(root, b.name[:8]) == b
    with pytest.raises(MissingFileError, match="no checkpoint with hash ffffffff.*morphable checkpoints"):
        find_checkpoint(root, "ffffffff")
    with pytest.raises(ValueError, match="8 to 16 lower-case hex"):
        find_checkpoint(root, "abc")
    twin = root / "checkpoints" / "run-c" / (a.name[:8] + "00000000")  # two hashes sharing the prefix
    twin.mkdir(parents=True)
    (twin / "manifest.json").write_text("{}")
    with pytest.raises(MissingFileError, match=f"2 checkpoints .*{a.name[:8]}"):
        find_checkpoint(root, a.name[:8])
    assert find_checkpoint(root, a.name) == a  # the full hash still names one


def test_morphable_checkpoints_lists_the_store(tmp_path):
    root, a, b = _store(tmp_path)
    env = {**os.environ, "MORPHABLE_STORAGE_ROOT": str(root), "MORPHABLE_SYNTHETIC_ROOT": str(tmp_path / "none")}
    env.pop("MORPHABLE_SETTINGS", None)

    def cli(*args):
        proc = subprocess.run([sys.executable, "-m", "pipelines.cli", "checkpoints", *args], env=env, cwd=REPO,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    rows = json.loads(cli("--json"))
    assert [r["hash"] for r in rows] == [a.name, b.name] and rows[1]["folder"] == str(b)
    assert [r["name"] for r in json.loads(cli("--json", "--name", "run-b"))] == ["run-b"]
    lines = cli().splitlines()
    assert lines[0].startswith(a.name) and lines[0].endswith("run-a") and len(lines) == 2


TRAINED = '''
[experiments.ablation]
kind = "trained"
dataset = "{dataset}"
topology = "{topology}"
training = {{ preset = "tiny", steps = 2 }}
'''


def test_an_experiment_on_a_topology_its_dataset_lacks_is_refused(tmp_path):
    """The topology is checked against the catalog (the dataset's topologies that the graph has a line for), with
    the file and the entry named; a topology the dataset has reaches the training configuration."""
    path = tmp_path / "experiments.toml"
    for dataset, topology in (("facescape", "smplx"), ("thuman", "flame"), ("thuman", "smplx_refined"),
                              ("facescape", "nersemble")):
        path.write_text(TRAINED.format(dataset=dataset, topology=topology))
        with pytest.raises(InvalidContentError, match=f"topology '{topology}' is not one of {dataset}'s") as err:
            load_experiments(path)
        assert str(path) in str(err.value) and "[experiments.ablation]" in str(err.value)
    path.write_text(TRAINED.format(dataset="facescape", topology="bilinear"))
    exp = load_experiments(path).get("ablation")
    cfg = exp.train_config()
    assert (cfg.dataset, cfg.topology, cfg.run_name(), exp.line) == ("facescape", "bilinear", "ablation",
                                                                      "facescape_bilinear")
    path.write_text(TRAINED.format(dataset="facescape", topology="flame").replace(
        'steps = 2 }', 'steps = 2, topology = "bilinear" }'))
    with pytest.raises(InvalidContentError, match="dataset, topology and name come from the experiment"):
        load_experiments(path)


def test_the_spaced_hash_recipe_is_the_one_stored_names_were_made_with():
    """storage.hashing.hash_json(spaced=True) is exactly sha256(json.dumps(doc, sort_keys=True)) (what named the
    experiments, protocols and evaluation sets before the helper existed); the default is the compact encoding."""
    import hashlib

    from storage.hashing import hash_json

    doc = {"b": [1, 2.5, None], "a": {"z": "x", "y": True}}
    assert hash_json(doc, 16, spaced=True) == hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]
    assert hash_json(doc) == hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":"))
                                            .encode()).hexdigest()[:16]


def test_a_lineage_record_reads_back_as_its_type_and_an_untyped_file_is_refused(tmp_path):
    from pipelines.records import CheckpointRecord, MetricsRecord, read_record, record_json

    path = tmp_path / "record.json"
    for record in (CheckpointRecord("e", "trained", "facescape", "bilinear", "/ckpt", "h"),
                   MetricsRecord("e", "demo", "facescape", "bilinear", "trained", "/t", "/s", {"psnr": 20.0},
                                 {"no_mesh": {"psnr": 18.0}})):
        path.write_text(record_json(record))
        assert read_record(path) == record
    path.write_text(json.dumps({"folder": "/ckpt", "checkpoint_hash": "h"}))  # an earlier version's plain dict
    with pytest.raises(InvalidContentError, match="not a lineage record of this version") as err:
        read_record(path)
    assert str(path) in str(err.value) and "materialize the asset partition again" in str(err.value)
    path.write_text(json.dumps({"record": "CheckpointRecord", "folder": "/ckpt"}))
    with pytest.raises(InvalidContentError, match="a CheckpointRecord with other fields"):
        read_record(path)
    with pytest.raises(TypeError, match="not a lineage record"):
        record_json({"folder": "/ckpt"})
