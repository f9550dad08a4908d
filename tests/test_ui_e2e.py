"""UI end to end: webserver + daemon on 127.0.0.1 (own process group, temporary DAGSTER_HOME), a partitioned
materialization launched through GraphQL, then the asset page in headless Chromium showing the thumbnail metadata.
Every element is awaited with a timeout (a loaded machine renders slowly). The screenshot goes to the test's
temporary folder; with MORPHABLE_UPDATE_DOCS=1 it also replaces docs/ui_asset_page.png (the README shows it)."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import REPO

pytestmark = pytest.mark.e2e
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
LOCATION = "assets_defs.definitions"
# headless on a closed network: no background connections (they are refused, many at a time, and slow the page)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_loaded(url: str, procs: list[subprocess.Popen], timeout: float = 240.0) -> None:
    query = ("{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
             "locationOrLoadError { __typename ... on PythonError { message } } } } } }")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            assert p.poll() is None, f"{p.args[0]} exited with {p.returncode}"
        try:
            doc = requests.post(f"{url}/graphql", json={"query": query}, timeout=10).json()
            entries = doc["data"]["workspaceOrError"]["locationEntries"]
            if entries and entries[0]["loadStatus"] == "LOADED":
                err = entries[0]["locationOrLoadError"]
                assert err["__typename"] == "RepositoryLocation", err
                return
        except (requests.ConnectionError, KeyError, TypeError):
            pass
        time.sleep(1)
    raise TimeoutError(f"code location not loaded at {url} within {timeout:.0f} s")


@pytest.fixture
def dagster_ui(tmp_path, standin_root):
    """A fresh instance (schema created before the two processes start, so they never race on SQLite)."""
    home = tmp_path / "home"
    env = {**os.environ, "DAGSTER_HOME": str(home), "MORPHABLE_SYNTHETIC_ROOT": str(standin_root),
           "MORPHABLE_DATA_ROOT": str(tmp_path / "data")}
    env.pop("MORPHABLE_SETTINGS", None)
    init = ("from assets_defs.instance import get_instance; from assets_defs.partitions import thuman_subjects; "
            "get_instance().add_dynamic_partitions(thuman_subjects.name, ['0526'])")
    subprocess.run([sys.executable, "-c", init], env=env, cwd=REPO, check=True, timeout=300)
    port = _port()
    bin_dir = Path(sys.executable).parent
    logs = [open(tmp_path / "webserver.log", "w"), open(tmp_path / "daemon.log", "w")]
    procs = [subprocess.Popen([str(bin_dir / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-m",
                               LOCATION], env=env, cwd=REPO, stdout=logs[0], stderr=subprocess.STDOUT,
                              start_new_session=True),
             subprocess.Popen([str(bin_dir / "dagster-daemon"), "run", "-m", LOCATION], env=env, cwd=REPO,
                              stdout=logs[1], stderr=subprocess.STDOUT, start_new_session=True)]
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_loaded(url, procs)
        yield url, port
    finally:
        for p in procs:  # each in its own process group: take the run subprocesses down with it
            with_group = os.getpgid(p.pid) if p.poll() is None else None
            if with_group:
                os.killpg(with_group, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(os.getpgid(p.pid), signal.SIGKILL)
        for f in logs:
            f.close()


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (scripts/bootstrap.sh installs it "
                                             "as root: apt-get install chromium)")
def test_partitioned_materialization_from_graphql_shows_its_thumbnail(dagster_ui, tmp_path):
    from dagster_graphql import DagsterGraphQLClient
    from playwright.sync_api import sync_playwright

    url, port = dagster_ui
    client = DagsterGraphQLClient("127.0.0.1", port_number=port)
    run_id = client.submit_job_execution("subjects_thuman", repository_location_name=LOCATION,
                                         repository_name="__repository__", tags={"dagster/partition": "0526"})
    deadline = time.monotonic() + 300
    status = None
    while time.monotonic() < deadline:
        status = client.get_run_status(run_id).value
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(2)
    assert status == "SUCCESS", status
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        # the newsletter prompt of a fresh instance may cover the page at any moment: dismiss it whenever it shows
        page.add_locator_handler(page.get_by_role("button", name="Skip"), lambda skip: skip.click())
        page.goto(f"{url}/assets/thuman/views?view=partitions&partition=0526", wait_until="networkidle")
        page.get_by_text("contact_sheet").first.wait_for(timeout=60000)
        page.get_by_text("[Show Markdown]").first.click(timeout=30000)
        img = page.locator('img[src^="data:image/png;base64"]').first
        img.wait_for(timeout=30000)
        box = img.bounding_box()
        assert box and box["width"] > 100 and box["height"] > 50 and img.get_attribute("alt") == "views"
        page.wait_for_timeout(300)
        shot = tmp_path / "ui_asset_page.png"
        page.screenshot(path=str(shot))
        if os.environ.get("MORPHABLE_UPDATE_DOCS") == "1":
            shutil.copyfile(shot, REPO / "docs" / "ui_asset_page.png")
        browser.close()
