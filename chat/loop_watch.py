"""How late a process's event loop runs, and what held it when it ran very late.

Everything a worker or a gateway does runs on one event loop: a callback that holds it for
100 ms delays every message in flight by that much, and is what a latency tail is made of. Two
parts watch it:

- a beat on the loop every ``interval`` seconds records how late it woke
  (``chat_event_loop_lag_seconds``): the loop's own view, cheap, always on;
- a watchdog thread that, when no beat came for ``stall_s``, takes the loop thread's stack
  there and then and logs it once per stall ("event loop held for at least N ms, at: ..."),
  with how long the stall lasted in the end. The stack is of the code holding the loop, which
  a log line written after the stall could no longer say.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback
from typing import Any

log = logging.getLogger(__name__)

LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class LoopWatch:
    """Beats on the running loop; a daemon thread reports stalls longer than ``stall_s``."""

    def __init__(self, lag: Any, stall_s: float, interval: float = 0.05) -> None:
        self.lag, self.stall_s, self.interval = lag, stall_s, interval
        self.beat = time.monotonic()
        self.stalls = 0  # stalls reported since start
        self._thread_id: int | None = None
        self._stop = threading.Event()

    async def run(self) -> None:
        """Beat until cancelled; starts the watchdog on first call (``stall_s`` 0: no watchdog)."""
        self._thread_id = threading.get_ident()
        if self.stall_s > 0:
            threading.Thread(target=self._watch, name="loop-watch", daemon=True).start()
        try:
            while True:
                due = time.monotonic() + self.interval
                await asyncio.sleep(self.interval)
                now = time.monotonic()
                self.beat = now
                self.lag.observe(max(0.0, now - due))
        finally:
            self._stop.set()

    def _watch(self) -> None:
        reported: float | None = None  # the beat a stall was reported against
        while not self._stop.wait(self.interval):
            beat = self.beat
            held = time.monotonic() - beat
            if reported is not None and beat != reported:  # the loop came back
                log.warning("event loop stall ended after %.0f ms", 1000 * (beat - reported - self.interval))
                reported = None
            if reported is None and held >= self.stall_s + self.interval:
                reported = beat
                self.stalls += 1
                log.warning("event loop held for at least %.0f ms, at:\n%s", 1000 * (held - self.interval),
                            self.stack())

    def stack(self) -> str:
        """The loop thread's stack now, innermost last (the code holding the loop)."""
        frame = sys._current_frames().get(self._thread_id or 0)
        if frame is None:
            return "(the loop's thread is gone)"
        return "".join(traceback.format_stack(frame, limit=14))
