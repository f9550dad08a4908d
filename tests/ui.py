"""Helpers of the UI end-to-end test: the Dagster webserver and daemon on 127.0.0.1 in their own process groups,
and headless Debian Chromium (Playwright with the system browser; nothing is downloaded)."""
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import requests

from tests.conftest import REPO

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
LOCATION = "assets_defs.definitions"
# headless on a closed network: no background connections (they are refused, many at a time, and slow the page)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_loaded(url: str, procs: list[subprocess.Popen], timeout: float = 240.0) -> None:
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


@contextlib.contextmanager
def dagster_ui(env: dict[str, str], logs: Path) -> Iterator[tuple[str, int]]:
    """Webserver + daemon on an existing DAGSTER_HOME (its schema already created, so they never race on SQLite)."""
    port = free_port()
    bin_dir = Path(sys.executable).parent
    files = [open(logs / "webserver.log", "w"), open(logs / "daemon.log", "w")]
    procs = [subprocess.Popen([str(bin_dir / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-m",
                               LOCATION], env=env, cwd=REPO, stdout=files[0], stderr=subprocess.STDOUT,
                              start_new_session=True),
             subprocess.Popen([str(bin_dir / "dagster-daemon"), "run", "-m", LOCATION], env=env, cwd=REPO,
                              stdout=files[1], stderr=subprocess.STDOUT, start_new_session=True)]
    try:
        url = f"http://127.0.0.1:{port}"
        wait_loaded(url, procs)
        yield url, port
    finally:
        for p in procs:  # each in its own process group: take the run subprocesses down with it
            with contextlib.suppress(ProcessLookupError):
                if p.poll() is None:
                    os.killpg(os.getpgid(p.pid), signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(os.getpgid(p.pid), signal.SIGKILL)
        for f in files:
            f.close()


def wait_for_run(client, run_id: str, timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        status = client.get_run_status(run_id).value
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(2)
    return status
