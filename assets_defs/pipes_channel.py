"""The message channel between a GPU step and its worker process: Dagster Pipes over a file, read in whole lines.

Dagster's file reader tails the message file with `readline()`, which returns a *partial* line when it catches the
worker mid-write (large messages such as our metadata with embedded PNGs span many pages, and a loaded machine
deschedules the writer inside the copy). `json.loads` then fails, the reader thread dies, and every later message —
the materialization and the "closed" message — is lost while the step still succeeds. This reader keeps the
incomplete tail until its newline arrives, and after the worker exits reads the file to its end.
"""
from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from contextlib import contextmanager
from typing import Iterator

from dagster import PipesMessageReader
from dagster_pipes import PipesDefaultMessageWriter

POLL_SECONDS = 0.05


def complete_lines(fh, pending: bytearray) -> list[bytes]:
    """Read what is new in `fh`; return the complete lines, keep an unfinished tail in `pending`."""
    chunk = fh.read()
    if not chunk:
        return []
    pending += chunk
    *lines, tail = bytes(pending).split(b"\n")
    pending[:] = tail
    return [line for line in lines if line.strip()]


class WholeLineFileMessageReader(PipesMessageReader):
    """Reads Pipes messages from a temporary file, one complete JSON line at a time."""

    @contextmanager
    def read_messages(self, handler) -> Iterator[dict]:
        with tempfile.TemporaryDirectory(prefix="morphable-pipes-") as folder:
            path = os.path.join(folder, "messages")
            open(path, "wb").close()
            done = threading.Event()
            failure: list[BaseException] = []

            def read() -> None:
                pending = bytearray()
                try:
                    with open(path, "rb") as fh:
                        while True:
                            finished = done.is_set()  # checked before reading, so nothing written earlier is missed
                            for line in complete_lines(fh, pending):
                                handler.handle_message(json.loads(line))
                            if finished:
                                break
                            time.sleep(POLL_SECONDS)
                    if pending.strip():
                        raise ValueError(f"the worker's last message is incomplete ({len(pending)} bytes, no newline)")
                except BaseException as exc:  # reported on the orchestrator side, never swallowed
                    failure.append(exc)

            thread = threading.Thread(target=read, name="pipes-message-reader", daemon=True)
            thread.start()
            try:
                yield {PipesDefaultMessageWriter.FILE_PATH_KEY: path,
                       PipesDefaultMessageWriter.INCLUDE_STDIO_IN_MESSAGES_KEY: False}
            finally:
                done.set()
                thread.join()
            if failure:
                raise RuntimeError(f"reading the worker's messages failed: {failure[0]}") from failure[0]

    def no_messages_debug_text(self) -> str:
        return "Tried to read messages from a temporary file written by the worker (pipelines.worker)."
