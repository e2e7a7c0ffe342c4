"""Run a module as ``python -m`` would, under cProfile, and write the stats when it exits.

    python -m bench.profiled OUT.prof streams.worker

Used by ``bench.calls`` to count the Python function calls of the worker and the gateway
(their main thread: where the event loop runs). The stats are written on any exit, SIGTERM
included (turned into SystemExit, as the processes' own shutdown expects).
"""

from __future__ import annotations

import cProfile
import runpy
import signal
import sys


def main() -> None:
    out, module = sys.argv[1], sys.argv[2]
    sys.argv = [module, *sys.argv[3:]]
    profiler = cProfile.Profile()
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    profiler.enable()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        profiler.disable()
        profiler.dump_stats(out)


if __name__ == "__main__":
    main()
