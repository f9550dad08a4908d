"""Files that several runs update never lose a row; files that readers open are replaced in one step."""
import subprocess
import sys

import pandas as pd

from storage.metric_tables import HISTORY_KEY, read_history
from tests.conftest import REPO

APPEND = """
import sys
import pandas as pd
from storage.metric_tables import update_history
root, who = sys.argv[1], sys.argv[2]
for i in range(50):
    update_history(root, pd.DataFrame([{"protocol": "p", "method": who, "checkpoint_hash": f"c{i}",
                                        "eval_set": f"{who}-{i}", "psnr": float(i)}]))
"""


def test_two_processes_appending_50_rows_each_keep_100(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", APPEND, str(tmp_path), who], cwd=REPO) for who in ("a", "b")]
    assert [p.wait(300) for p in procs] == [0, 0]
    hist = read_history(tmp_path)
    assert len(hist) == 100 and not hist.duplicated(HISTORY_KEY).any()
    assert sorted(hist.loc[hist["method"] == "a", "psnr"]) == [float(i) for i in range(50)]
    assert not [p.name for p in (tmp_path / "metrics").iterdir() if ".tmp-" in p.name]


def test_a_row_for_the_same_key_replaces_the_old_one(tmp_path):
    from storage.metric_tables import update_history

    row = {"protocol": "p", "method": "m", "checkpoint_hash": "c", "eval_set": "e", "psnr": 1.0}
    update_history(tmp_path, pd.DataFrame([row]))
    update_history(tmp_path, pd.DataFrame([{**row, "psnr": 2.0}]))
    hist = read_history(tmp_path)
    assert len(hist) == 1 and hist["psnr"].iloc[0] == 2.0


def test_plots_replace_their_file_in_one_rename(tmp_path, monkeypatch):
    """The PNG is written to a temporary sibling and renamed: while matplotlib writes, the old file is intact."""
    import os

    from pipelines.plots import loss_curve

    path = tmp_path / "loss.png"
    path.write_bytes(b"old")
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append((path.read_bytes(), str(src) != str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    loss_curve([1.0, 0.5, 0.25], path)
    assert seen == [(b"old", True)]  # the old file was untouched until the single rename
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["loss.png"]
