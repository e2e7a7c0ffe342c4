"""A progress line on stderr: a bar when the total is known, counts and events/s always."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, what: str, total: int | None = None, *, stream: TextIO | None = None,
                 enabled: bool = True) -> None:
        self.what, self.total, self.count = what, total, 0
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = self.stream.isatty()
        self.started = time.monotonic()
        self._shown = 0.0

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def rate(self) -> float:
        return self.count / self.elapsed if self.elapsed > 0 else 0.0

    def add(self, n: int) -> None:
        self.count += n
        now = time.monotonic()
        if self.enabled and now - self._shown >= (0.2 if self.tty else 5.0):
            self._shown = now
            self._show(end="\r" if self.tty else "\n")

    def _show(self, end: str) -> None:
        bar = ""
        if self.total:
            done = min(1.0, self.count / self.total)
            bar = f"[{'#' * int(done * 30):<30}] {done:4.0%} "
        self.stream.write(f"{self.what}: {bar}{self.count:,} events, {self.rate:,.0f}/s{' ' * 8}{end}")
        self.stream.flush()

    def done(self) -> str:
        """Ends the line; returns the summary ``N events in S s (R events/s)``."""
        if self.enabled and self.tty:
            self._show(end="\n")
        return f"{self.count:,} events in {self.elapsed:.2f} s ({self.rate:,.0f} events/s)"
