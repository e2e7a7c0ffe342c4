"""Where a batch spends its time, stage by stage, under load (off-CPU as well as on).

    python -m bench.stages [--rate 600 --seconds 15 --users 1000 --group-size 10]

Starts the system as ``bench.run_local`` does with the worker's Prometheus endpoint on, runs
``bench.loadgen`` at ``--rate`` for ``--seconds``, then prints from the worker's histograms,
per agent and step (``chat_batch_step_seconds``) and per projection
(``chat_projection_write_seconds``): batches, mean and total seconds, and the share of the
measured wall time the step took (a step near 100% is the stage the pipeline waits on), with
the mean batch size per agent, and how late the worker's event loop ran its 50 ms beats
(``chat_event_loop_lag_seconds``: a mean of milliseconds is a loop with work queued).
Nothing is appended to RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
import urllib.request
from collections import defaultdict

from bench import loadgen
from bench.run_local import local_system, proc_sample
from infra.services import free_port

_SAMPLE = re.compile(r'^(chat_batch_step_seconds|chat_projection_write_seconds|chat_batch_size'
                     r'|chat_event_loop_lag_seconds)_(sum|count)(?:\{([^}]*)\})? (\S+)$')


def scrape(port: int) -> dict[tuple[str, str], dict[str, float]]:
    """``{(metric, labels): {"sum": s, "count": n}}`` of the worker's batch histograms."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m:
            out[(m.group(1), m.group(3) or "")][m.group(2)] = float(m.group(4))
    return out


def table(before: dict, after: dict, wall: float) -> list[str]:
    lines = [f"{'metric':<32} {'labels':<36} {'batches':>8} {'mean ms':>9} {'total s':>8} {'% wall':>7}"]
    for key in sorted(after):
        a, b = after[key], before.get(key, {})
        n = a.get("count", 0) - b.get("count", 0)
        s = a.get("sum", 0) - b.get("sum", 0)
        if not n:
            continue
        metric, labels = key
        if metric == "chat_batch_size":
            lines.append(f"{metric:<32} {labels:<36} {n:>8.0f} {'mean size':>9} {s / n:>8.1f}")
            continue
        lines.append(f"{metric:<32} {labels:<36} {n:>8.0f} {1000 * s / n:>9.2f} {s:>8.2f} {100 * s / wall:>6.1f}%")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.stages", description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=600.0)
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--group-size", type=int, default=10)
    p.add_argument("--env", action="append", default=[], metavar="CHAT_X=VALUE")
    args = p.parse_args(argv)
    port = free_port()
    env = {"CHAT_LOG_LEVEL": "WARNING", "CHAT_WORKER_METRICS_PORT": str(port),
           **dict(e.split("=", 1) for e in args.env)}
    with local_system(env=env) as running:
        cfg = loadgen.Config(url=running.system.url(), users=args.users, group_size=args.group_size,
                             devices_per_user=1, messages=int(args.rate * args.seconds), rate=args.rate,
                             drain_timeout_s=60, warmup=0)
        pids = running.pids()
        before, cpu0 = scrape(port), {n: proc_sample(p) for n, p in pids.items()}
        started = time.monotonic()
        results = asyncio.run(loadgen.run(cfg))
        wall = time.monotonic() - started
        after, cpu1 = scrape(port), {n: proc_sample(p) for n, p in pids.items()}
    loadgen.print_summary(results)
    deliveries = max(1, results["deliveries"]["received"])
    cpu = {n: cpu1[n]["cpu_s"] - cpu0[n]["cpu_s"] for n in pids if cpu0.get(n) and cpu1.get(n)}
    print(f"\nserver CPU per delivery over {deliveries} deliveries (set-up included): "
          + ", ".join(f"{n} {1e6 * c / deliveries:.0f} us" for n, c in cpu.items())
          + f"; total {1e6 * sum(cpu.values()) / deliveries:.0f} us")
    print(f"\nworker batch steps over {wall:.1f} s (set-up of the load included):")
    print("\n".join(table(before, after, wall)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
