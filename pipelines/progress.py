"""Progress a person can follow: step/total, elapsed and ETA, as a live line on a terminal and as periodic lines in
the log (which a Dagster run shows in the UI: the GPU workers send their log through Pipes)."""
from __future__ import annotations

import sys
import time
from typing import Callable


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    """`update(n)` after each unit of work. Logs a line every `log_every_s` seconds (and at the end); draws a live
    line on stderr when it is a terminal."""

    def __init__(self, total: int, label: str, log: Callable[[str], None] | None = None, log_every_s: float = 15.0,
                 start: int = 0, live: bool | None = None) -> None:
        self.total, self.label, self.log, self.every = max(int(total), 1), label, log, log_every_s
        self.done = self.first = start
        self.t0 = self.last = time.monotonic()
        self.live = sys.stderr.isatty() if live is None else live

    def line(self) -> str:
        elapsed = time.monotonic() - self.t0
        rate = (self.done - self.first) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        eta_text = _clock(eta) if eta == eta else "?"
        return (f"{self.label}: {self.done}/{self.total} ({100 * self.done / self.total:.0f} %), "
                f"{_clock(elapsed)} elapsed, ETA {eta_text}")

    def update(self, n: int = 1, note: str = "") -> None:
        self.done = min(self.done + n, self.total)
        now = time.monotonic()
        text = self.line() + (f", {note}" if note else "")
        if self.live:
            sys.stderr.write("\r" + text[:160].ljust(80))
            sys.stderr.flush()
        if self.log is not None and (now - self.last >= self.every or self.done == self.total):
            self.log(text)
            self.last = now

    def close(self) -> None:
        if self.live:
            sys.stderr.write("\n")
            sys.stderr.flush()
