"""The cyclic garbage collector of a long-running worker or gateway process (``tune``).

A full collection walks every tracked object of the process. A gateway holding thousands of
sockets has a million of them, and Python ran a full collection every few seconds while a big
group's fan-out made and dropped a container per socket per message: each walk held the event
loop for hundreds of milliseconds, and found nothing to free (bench/RESULTS.md, fan-out to
10,000 members). Two habits of long-running Python servers keep it off the hot path:

- a much larger young generation (``CHAT_GC_THRESHOLD``), so what lives for one turn of the
  loop is freed by its reference count before any collection sees it, and never counts toward
  a full one;
- ``gc.freeze()`` once started: the modules, classes and start-up objects move to the
  permanent generation, which no collection walks.

Reference counting frees everything that is not in a cycle as before; cycles are still
collected, only less often.
"""

from __future__ import annotations

import gc

from chat.settings import Settings


def tune(settings: Settings) -> None:
    """Apply ``settings.gc_threshold`` (0: leave Python's thresholds) and freeze what exists now."""
    if settings.gc_threshold > 0:
        _, gen1, gen2 = gc.get_threshold()
        gc.set_threshold(settings.gc_threshold, gen1, gen2)
    gc.collect()
    gc.freeze()
