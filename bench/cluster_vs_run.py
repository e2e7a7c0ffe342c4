"""``python -m bench.cluster_vs_run``: accepted msg/s of ``make cluster`` against ``make run`` at
the same offered loads, with the load generator (``bench.loadgen``) through one URL each.

``make run`` is started as it is (``python -m infra.run``: one Kafka node, one Redis, SQLite
timelines, one worker, one gateway) on free ports in a temporary directory; ``make cluster`` as
``infra.cluster.Cluster`` on free ports; and ``make run`` with ``CHAT_TIMELINE_BACKEND=cassandra``
(the cluster's timeline store on one node, to tell the store's share from the cluster's) (three brokers, RF 3 with acks=all and min ISR 2, a Redis
Cluster, Cassandra, two workers, two gateways behind HAProxy). Each offered rate is one load
generator run of ``--seconds`` against a running system (fresh users and groups per run).
Appends a section to ``bench/RESULTS.md`` (``--results``) and prints the table.

    .venv/bin/python -m bench.cluster_vs_run --rates 100,300,600 --seconds 15
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator, Sequence

from bench.run_local import append_results, code_version, machine_line
from infra.services import free_port

REPO = Path(__file__).resolve().parent.parent
# make run as it is (SQLite timelines), make run on the cluster's timeline store, make cluster.
SYSTEMS = ("make run", "make run (cassandra)", "make cluster")


def wait_ok(url: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url}/healthz not 200 after {timeout:.0f}s")


class MakeRun:
    """``python -m infra.run`` on free ports in ``base``; stopped with SIGINT as Ctrl-C does.
    ``cassandra``: as ``CHAT_TIMELINE_BACKEND=cassandra make run``."""

    def __init__(self, base: Path, cassandra: bool = False) -> None:
        self.port = free_port()
        env = {**os.environ, "CHAT_DATA_DIR": str(base), "CHAT_PORT": str(self.port),
               "CHAT_WORKER_METRICS_PORT": str(free_port()),
               "CHAT_TIMELINE_BACKEND": "cassandra" if cassandra else "sqlite"}
        argv = [sys.executable, "-m", "infra.run", "--broker-port", str(free_port()),
                "--controller-port", str(free_port()), "--redis-port", str(free_port()),
                "--cassandra-port", str(free_port()), "--cassandra-storage-port", str(free_port())]
        self.log = open(base / "run.out", "wb")
        self.proc = subprocess.Popen(argv, env=env, cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(90)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


class MakeCluster:
    def __init__(self, base: Path) -> None:
        from infra.cluster import Cluster
        from infra.cluster_stack import ClusterPorts

        self.cluster = Cluster(base, ClusterPorts.free()).start()
        self.url = self.cluster.url

    def stop(self) -> None:
        self.cluster.stop()


def load(url: str, rate: int, seconds: float, users: int, out: Path) -> dict[str, Any]:
    """One load generator run; its results dict."""
    argv = [sys.executable, "-m", "bench.loadgen", "--url", url, "--users", str(users), "--group-size", "5",
            "--devices-per-user", "1", "--messages", str(int(rate * seconds)), "--rate", str(rate),
            "--drain-timeout", "30", "--json", str(out)]
    subprocess.run(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=seconds + 300)
    return json.loads(out.read_text())


def measure(kind: str, rates: Sequence[int], seconds: float, users: int) -> Iterator[tuple[str, int, dict]]:
    with tempfile.TemporaryDirectory(prefix=f"bench-{kind}-") as tmp:
        base = Path(tmp)
        system = MakeCluster(base) if kind == "make cluster" else MakeRun(base, cassandra="cassandra" in kind)
        try:
            try:
                wait_ok(system.url)
            except RuntimeError:
                if isinstance(system, MakeRun):
                    print((base / "run.out").read_text()[-3000:], file=sys.stderr)
                raise
            for rate in rates:
                result = load(system.url, rate, seconds, users, base / f"{rate}.json")
                print(f"{kind} {rate} msg/s offered: {row(kind, rate, result)}", flush=True)
                yield kind, rate, result
        finally:
            system.stop()


def row(kind: str, rate: int, r: dict[str, Any]) -> str:
    ack = r.get("ack_ms") or {}
    d = r.get("deliveries") or {}
    return (f"| {kind} | {rate} ({r.get('offered_msg_s')}) | {r.get('throughput_msg_s')} | "
            f"{r.get('acked')} / {r.get('sent')} | {ack.get('p50')} / {ack.get('p99')} | "
            f"{d.get('received')} / {d.get('expected')} | {d.get('duplicates')} | {d.get('out_of_order')} |")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.cluster_vs_run", description=__doc__.split("\n\n")[0])
    p.add_argument("--rates", default="100,300,600", help="offered msg/s, comma-separated")
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--users", type=int, default=100)
    p.add_argument("--results", type=Path, default=REPO / "bench" / "RESULTS.md")
    args = p.parse_args(argv)
    rates = [int(r) for r in args.rates.split(",")]
    rows = []
    for system in SYSTEMS:
        rows += [row(kind, rate, r) for kind, rate, r in measure(system, rates, args.seconds, args.users)]
    lines = [f"\n## make cluster against make run, {time.strftime('%Y-%m-%d')}", "",
             machine_line(),
             f"Command: `.venv/bin/python -m bench.cluster_vs_run --rates {args.rates} --seconds {args.seconds:g}"
             f" --users {args.users}` at {code_version()} ({args.users} users x 1 device in groups of 5; the"
             " load generator on the same 2 cores).", "",
             "| system | offered msg/s (achieved) | accepted msg/s | acked / sent | send→ack p50 / p99 ms |"
             " deliveries received / expected | duplicates | out of order |",
             "|---|---|---|---|---|---|---|---|", *rows]
    append_results(lines, args.results)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
