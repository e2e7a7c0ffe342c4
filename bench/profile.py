"""Profile the hot path: sample the stream worker and the gateway with py-spy under load.

    python -m bench.profile [--rate 800 --seconds 20 --users 200 --group-size 10 --top 30]

Starts the system as ``bench.run_local`` does (``local_system``: Apache Kafka, Redis,
one worker, one gateway), runs ``bench.loadgen`` at ``--rate`` for ``--seconds`` while
``py-spy record`` samples both processes (raw collapsed stacks), then prints, per process, the
functions with the most samples: inclusive (the function or anything it called) and own (the
function itself). Raw stacks stay in ``--out`` (default: a temporary directory) for a flame
graph (``py-spy``'s ``--format speedscope`` can be asked for with ``--speedscope``). py-spy comes
with the bench extras (``pip install -e '.[bench]'``). Nothing is appended to RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import loadgen
from bench.run_local import local_system


def frame_name(frame: str) -> str:
    """``func (path/to/file.py:12)`` -> ``func file.py``."""
    name, _, where = frame.partition(" (")
    return f"{name} {where.split(':')[0].rsplit('/', 1)[-1]}" if where else name


def top_functions(raw: str, n: int) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]]]:
    """From py-spy's raw (collapsed) output: total samples, the ``n`` most inclusive and the
    ``n`` most own functions, each with its samples."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = [frame_name(f) for f in stack.split(";")]
        for name in set(frames):
            inclusive[name] += samples
        own[frames[-1]] += samples
    return total, inclusive.most_common(n), own.most_common(n)


def report(name: str, raw: str, n: int) -> list[str]:
    total, inclusive, own = top_functions(raw, n)
    lines = [f"== {name}: {total} samples"]
    for title, rows in (("inclusive", inclusive), ("own", own)):
        lines.append(f"-- {title}")
        lines += [f"{100 * c / max(total, 1):5.1f}%  {f}" for f, c in rows]
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=800.0)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--users", type=int, default=200)
    p.add_argument("--group-size", type=int, default=10)
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--out", type=Path, default=None, help="keep the raw stacks here")
    p.add_argument("--speedscope", action="store_true", help="also write speedscope JSON")
    p.add_argument("--gil", action="store_true",
                   help="sample only the thread holding the GIL: Python's CPU, without threads waiting in C")
    p.add_argument("--env", action="append", default=[], metavar="CHAT_X=VALUE")
    args = p.parse_args(argv)
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("py-spy is missing: .venv/bin/pip install -e '.[bench]'", file=sys.stderr)
        return 2
    out = args.out or Path(tempfile.mkdtemp(prefix="chat-profile-"))
    out.mkdir(parents=True, exist_ok=True)
    env = {"CHAT_LOG_LEVEL": "WARNING", **dict(e.split("=", 1) for e in args.env)}
    with local_system(env=env) as running:
        pids = {"worker": running.system.workers[0].pid, "gateway": running.system.gateways[0].pid}
        formats = [("raw", "txt")] + ([("speedscope", "json")] if args.speedscope else [])
        # Sampling runs from here until the load has drained (SIGINT makes py-spy write its file).
        spies = [subprocess.Popen([spy, "record", "-p", str(pid), "-f", fmt, "-o",
                                   str(out / f"{name}.{ext}"), "--nonblocking"]
                                  + (["--gil"] if args.gil else []),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for name, pid in pids.items() for fmt, ext in formats]
        cfg = loadgen.Config(url=running.system.url(), users=args.users, group_size=args.group_size,
                             devices_per_user=1, messages=int(args.rate * args.seconds), rate=args.rate,
                             drain_timeout_s=30)
        try:
            results = asyncio.run(loadgen.run(cfg))
        finally:
            for s in spies:
                s.send_signal(signal.SIGINT)
            for s in spies:
                s.wait(timeout=60)
    loadgen.print_summary(results)
    for name in pids:
        print("\n".join(report(name, (out / f"{name}.txt").read_text(), args.top)))
    print(f"raw stacks in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
