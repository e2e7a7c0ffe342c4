"""Python function calls per message in the worker and the gateway, under a steady load.

    python -m bench.calls [--rate 200 --seconds 15 --users 1000 --group-size 10 --top 25]

Starts the system as ``bench.run_local`` does, each process under cProfile (``bench.profiled``;
its main thread, where the event loop and the agents run), runs ``bench.loadgen`` (every user
sends at random), stops the system and prints, per process, the calls per accepted message
and the functions called most. A deterministic count, unlike timings on a shared machine:
the figure the issue asks to drive down. The load's set-up (sign-in, connect, groups) is
counted too, so runs compare at the same users and messages. Nothing is appended to RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import pstats
import sys
import tempfile
from pathlib import Path

from bench import loadgen
from bench.run_local import local_system
from tests.support import System


def profiled(out_dir: Path) -> None:
    """Make System start its processes under ``bench.profiled``, stats in ``out_dir``."""
    original = System._service

    def service(self: System, kind: str, module: str, extra: dict[str, str]):  # type: ignore[no-untyped-def]
        svc = original(self, kind, module, extra)
        svc.argv = [sys.executable, "-m", "bench.profiled", str(out_dir / f"{svc.name}.prof"), module]
        return svc

    System._service = service  # type: ignore[method-assign]


def report(path: Path, messages: int, top: int) -> list[str]:
    stats = pstats.Stats(str(path))
    total = sum(v[1] for v in stats.stats.values())  # type: ignore[attr-defined]
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][1])[:top]  # type: ignore[attr-defined]
    lines = [f"== {path.stem}: {total:,} calls, {total / messages:,.0f} per message"]
    for (file, line, name), (_cc, calls, tottime, _ct, _callers) in rows:
        lines.append(f"{calls / messages:10.1f}/msg  {tottime:7.2f}s own  {name} ({Path(file).name}:{line})")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.calls", description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=200.0)
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--group-size", type=int, default=10)
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args(argv)
    out = Path(tempfile.mkdtemp(prefix="chat-calls-"))
    profiled(out)
    with local_system(env={"CHAT_LOG_LEVEL": "WARNING"}) as running:
        cfg = loadgen.Config(url=running.system.url(), users=args.users, group_size=args.group_size,
                             devices_per_user=1, messages=int(args.rate * args.seconds), rate=args.rate,
                             drain_timeout_s=60, shape="random")
        results = asyncio.run(loadgen.run(cfg))
    loadgen.print_summary(results)
    messages = max(1, results["acked"])
    for path in sorted(out.glob("*.prof")):
        print("\n".join(report(path, messages, args.top)))
    print(f"stats in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
