"""The `morphable` command line, as a user runs it."""
import json
import os
import shutil
import subprocess
import sys

import pytest


def run(args, env_extra, cwd):
    env = {**os.environ, **env_extra}
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture
def env(standin_root, tmp_path):
    return {"MORPHABLE_SYNTHETIC_ROOT": str(standin_root), "MORPHABLE_DATA_ROOT": str(tmp_path / "data")}


def test_settings_json(env, tmp_path):
    out = run(["settings", "--json"], env, tmp_path)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["facescape_root"].endswith("facescape") and doc["source"] == "embedded default"


def test_demo_data_is_idempotent(env, standin_root, tmp_path):
    out = run(["demo-data"], env, tmp_path)
    assert out.returncode == 0 and "already complete" in out.stdout


def test_validate_reports_ok_and_named_errors(env, standin_root, tmp_path):
    out = run(["validate", "--dataset", "all", "--body-models"], env, tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count(" ok") == 10 and "flame" in out.stdout  # 4 FaceScape subjects, 6 THuman scans
    broken = tmp_path / "broken"
    shutil.copytree(standin_root / "facescape", broken / "facescape")
    (broken / "facescape" / "122" / "1_neutral" / "params.json").write_text("{")
    out = run(["validate", "--dataset", "facescape", "--json"], {**env, "MORPHABLE_FACESCAPE_ROOT":
                                                                 str(broken / "facescape")}, tmp_path)
    assert out.returncode == 1
    reports = {r["subject"]: r for r in json.loads(out.stdout)["subjects"]}
    assert "params.json: not valid JSON" in reports["122"]["error"] and reports["1"]["error"] is None


def test_unknown_subject_is_a_clear_error(env, tmp_path):
    out = run(["validate", "--dataset", "facescape", "--subject", "../x"], env, tmp_path)
    assert out.returncode == 1 and "invalid subject id" in out.stdout
