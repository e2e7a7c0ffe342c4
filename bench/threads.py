"""CPU per thread of the worker and the gateway under load: where a process's CPU goes when
its Python (the GIL holder) is only part of it.

    python -m bench.threads [--rate 600 --seconds 15 --users 1000 --group-size 10 --runs 1]

Starts the system as ``bench.run_local`` does, runs ``bench.loadgen`` (every user sends at
random), and reads ``/proc/<pid>/task/*/stat`` before and after: CPU seconds per thread, by
the thread's name (librdkafka names its threads ``rdk:...``; the main thread runs the event
loop; other Python threads are told apart by id; the JVM names its compiler and GC threads).
With ``--runs N`` the load runs N times on one system, so that later runs show the steady state
without the broker's JIT warm-up. Nothing is appended to RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections import defaultdict
from pathlib import Path

from bench import loadgen
from bench.run_local import local_system

_TICK = os.sysconf("SC_CLK_TCK")


def threads(pid: int) -> dict[str, float]:
    """CPU seconds so far per thread id ("name tid")."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
            name = (task / "comm").read_text().strip()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if task.name == str(pid):
            name = "main thread (the event loop)"
        elif name == "python":
            name = f"python thread {task.name}"
        out[f"{name} {task.name}"] = (int(fields[11]) + int(fields[12])) / _TICK
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.threads", description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=600.0)
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--group-size", type=int, default=10)
    p.add_argument("--runs", type=int, default=1,
                   help="load runs on the same system, each reported: later ones see warm JITs and caches")
    p.add_argument("--processes", default="worker,gateway,kafka", help="which processes' threads to read")
    p.add_argument("--env", action="append", default=[], metavar="CHAT_X=VALUE",
                   help="a setting for the system's processes (repeatable)")
    args = p.parse_args(argv)
    wanted = args.processes.split(",")
    env = {"CHAT_LOG_LEVEL": "WARNING", **dict(e.split("=", 1) for e in args.env)}
    with local_system(env=env) as running:
        pids = {k: v for k, v in running.pids().items() if v and k in wanted}
        for run in range(1, args.runs + 1):
            cfg = loadgen.Config(url=running.system.url(), users=args.users, group_size=args.group_size,
                                 devices_per_user=1, messages=int(args.rate * args.seconds), rate=args.rate,
                                 drain_timeout_s=60, shape="random")
            before = {n: threads(pid) for n, pid in pids.items()}
            results = asyncio.run(loadgen.run(cfg))
            after = {n: threads(pid) for n, pid in pids.items()}
            print(f"=== run {run} of {args.runs}")
            report(pids, before, after, results)
    return 0


def report(pids: dict[str, int], before: dict[str, dict[str, float]], after: dict[str, dict[str, float]],
           results: dict) -> None:
    """Print the load's summary and each process's CPU by thread over the run."""
    loadgen.print_summary(results)
    deliveries = max(1, results["deliveries"]["received"])
    for name in pids:
        by_name: dict[str, float] = defaultdict(float)
        for tid, cpu in after[name].items():
            by_name[tid.rsplit(" ", 1)[0]] += cpu - before[name].get(tid, 0.0)
        total = sum(by_name.values())
        print(f"== {name}: {total:.2f} CPU s, {1e6 * total / deliveries:.0f} us per delivery")
        for thread, cpu in sorted(by_name.items(), key=lambda kv: -kv[1]):
            if cpu > 0.005:
                print(f"  {cpu:7.2f} s  {100 * cpu / max(total, 1e-9):5.1f}%  {thread}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
