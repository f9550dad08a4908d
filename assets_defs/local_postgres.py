"""A throw-away PostgreSQL server on 127.0.0.1 for an instance's storage in tests and benchmarks (the cluster runs a
real one): initdb in a temporary folder, trust authentication, database `dagster`, user `dagster`."""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator


class PostgresUnavailable(RuntimeError):
    """Why no server could be started here (binaries or the system user missing)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[int]:
    """Start a server, yield its port, stop it and delete its data (run as the `postgres` user when we are root)."""
    initdb = shutil.which("initdb") or next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))), None)
    if initdb is None:
        raise PostgresUnavailable("PostgreSQL server binaries are not installed (Debian: apt-get install postgresql)")
    bindir = Path(os.path.realpath(initdb)).parent
    as_user: list[str] = []
    if os.geteuid() == 0:
        if subprocess.run(["id", "postgres"], capture_output=True).returncode != 0:
            raise PostgresUnavailable("running as root without a `postgres` system user to own the server")
        as_user = ["runuser", "-u", "postgres", "--"]
    base = Path(tempfile.mkdtemp(prefix="morphable-pg-"))  # (pytest's tmp folders are private to root)
    os.chmod(base, 0o755)
    data = base / "data"
    data.mkdir()
    if as_user:
        shutil.chown(data, "postgres")
    port = _free_port()
    subprocess.run(as_user + [str(bindir / "initdb"), "-D", str(data), "-U", "dagster", "--auth=trust"],
                   check=True, capture_output=True, timeout=120, cwd="/")
    proc = subprocess.Popen(as_user + [str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-h", "127.0.0.1",
                                       "-k", str(data)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/")
    try:
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        subprocess.run(as_user + [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "dagster",
                                  "dagster"], check=True, capture_output=True, timeout=60, cwd="/")
        yield port
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(base, ignore_errors=True)
