"""``python -m bench.timelines --backend sqlite|cassandra``: a timeline store under the projector's load.

One store writes as the stream worker's projector does: batches of ``--batch-min``..``--batch-max``
messages (each to one of ``--conversations`` conversations, at its next seq), one batch at a time,
paced to ``--rate`` messages/s in total. A second store, as a gateway would hold, reads the newest
``--page`` messages of a random conversation ``--reads`` times a second, each read on its own
schedule whatever the others do. Both run ``--duration`` seconds in this process, after
``--prefill`` messages per conversation. It reports p50 / p99 / max of the append-batch time and of
the page-read time, the rates reached, and the CPU time of this process (and of the node).

Cassandra: the node named by ``--hosts``, or (by default) a local one from ``infra.cassandra`` in a
temporary directory, whose start time it reports: first on the empty directory, then a restart
on the same directory after the run (its data then read back). SQLite: a file in a temporary dir.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from projections.timelines import TimelineMessage, TimelineStore, current_ms

RETENTION_MS = 90 * 86_400_000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.timelines", description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=("sqlite", "cassandra"), required=True)
    p.add_argument("--rate", type=float, default=400.0, help="messages appended per second (default 400)")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of load (default 30)")
    p.add_argument("--conversations", type=int, default=100)
    p.add_argument("--batch-min", type=int, default=5)
    p.add_argument("--batch-max", type=int, default=10)
    p.add_argument("--reads", type=float, default=50.0, help="page reads per second (default 50)")
    p.add_argument("--page", type=int, default=50, help="messages per page read (default 50)")
    p.add_argument("--prefill", type=int, default=100, help="messages per conversation before the run")
    p.add_argument("--body-bytes", type=int, default=120)
    p.add_argument("--hosts", default="", help="an external Cassandra (host[:port],...); default: a local node")
    p.add_argument("--heap", default="", help="the local node's -Xmx (default: infra.cassandra's)")
    p.add_argument("--seed", type=int, default=1)
    return p.parse_args(argv)


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50, p99 and max in ms, and the count."""
    if not samples:
        return {"n": 0}
    s = sorted(samples)
    at = lambda q: s[min(len(s) - 1, int(q * len(s)))]  # noqa: E731
    return {"n": len(s), "p50_ms": round(at(0.50) * 1000, 2), "p99_ms": round(at(0.99) * 1000, 2),
            "max_ms": round(s[-1] * 1000, 2)}


class Load:
    """The writer's and the readers' schedules and what they measured."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.conversations = [f"bench-{uuid.uuid4().hex[:8]}-{n}" for n in range(args.conversations)]
        self.next_seq = dict.fromkeys(self.conversations, 1)
        self.body = "x" * args.body_bytes
        self.appends: list[float] = []
        self.reads: list[float] = []
        self.read_sizes: list[int] = []
        self.written = 0
        self.writer_behind = 0.0  # the most the writer fell behind its schedule, s

    def batch(self, size: int) -> list[TimelineMessage]:
        now, out = current_ms(), []
        for _ in range(size):
            cid = self.rng.choice(self.conversations)
            seq = self.next_seq[cid]
            self.next_seq[cid] = seq + 1
            out.append(TimelineMessage(cid, seq, f"m-{cid}-{seq}", f"u{seq % 7}", f"c{seq}", self.body, None, now))
        return out

    async def prefill(self, store: TimelineStore) -> None:
        for _ in range(self.args.prefill):
            await store.append(self.batch(self.args.conversations))

    async def write(self, store: TimelineStore, until: float) -> None:
        """Batches one after another, as the projector applies them; due times from the rate."""
        mean = (self.args.batch_min + self.args.batch_max) / 2
        interval, due = mean / self.args.rate, time.monotonic()
        while due < until:
            now = time.monotonic()
            if due > now:
                await asyncio.sleep(due - now)
            self.writer_behind = max(self.writer_behind, time.monotonic() - due)
            batch = self.batch(self.rng.randint(self.args.batch_min, self.args.batch_max))
            started = time.perf_counter()
            await store.append(batch)
            self.appends.append(time.perf_counter() - started)
            self.written += len(batch)
            due += interval * len(batch) / mean

    async def read_one(self, store: TimelineStore) -> None:
        started = time.perf_counter()
        page = await store.page(self.rng.choice(self.conversations), limit=self.args.page)
        self.reads.append(time.perf_counter() - started)
        self.read_sizes.append(len(page.messages))

    async def read(self, store: TimelineStore, until: float) -> None:
        """Reads on their own schedule: a slow one does not hold the next back."""
        interval, due, running = 1 / self.args.reads, time.monotonic(), set()
        while due < until:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            task = asyncio.create_task(self.read_one(store))
            running.add(task)
            task.add_done_callback(running.discard)
            due += interval
        await asyncio.gather(*running)


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU time of this process, or of ``pid`` (from /proc)."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run(args: argparse.Namespace, writer: TimelineStore, reader: TimelineStore,
              node_pid: int | None) -> dict[str, Any]:
    load = Load(args)
    for store in (writer, reader):
        await store.open()
    try:
        started = time.monotonic()
        await load.prefill(writer)
        prefill_s = time.monotonic() - started
        cpu0, node0, t0 = cpu_seconds(), cpu_seconds(node_pid) if node_pid else 0.0, time.monotonic()
        until = t0 + args.duration
        await asyncio.gather(load.write(writer, until), load.read(reader, until))
        elapsed = time.monotonic() - t0
        result = {
            "append_batch": percentiles(load.appends), "page_read": percentiles(load.reads),
            "appended_msg_per_s": round(load.written / elapsed, 1),
            "reads_per_s": round(len(load.reads) / elapsed, 1),
            "mean_batch": round(load.written / max(1, len(load.appends)), 2),
            "mean_page": round(sum(load.read_sizes) / max(1, len(load.read_sizes)), 1),
            "writer_behind_max_s": round(load.writer_behind, 3), "prefill_s": round(prefill_s, 2),
            "bench_cpu_pct": round(100 * (cpu_seconds() - cpu0) / elapsed, 1),
        }
        if node_pid:
            result["node_cpu_pct"] = round(100 * (cpu_seconds(node_pid) - node0) / elapsed, 1)
        result["check_conversation"] = (load.conversations[0], load.next_seq[load.conversations[0]] - 1)
        return result
    finally:
        for store in (writer, reader):
            await store.close()


def bench_sqlite(args: argparse.Namespace) -> dict[str, Any]:
    from projections.timelines_sqlite import SqliteTimelineStore

    base = Path(tempfile.mkdtemp(prefix="bench-timelines-"))
    try:
        path = base / "timelines.sqlite3"
        return asyncio.run(run(args, SqliteTimelineStore(path, RETENTION_MS), SqliteTimelineStore(path, RETENTION_MS),
                               None))
    finally:
        shutil.rmtree(base, ignore_errors=True)


def bench_cassandra(args: argparse.Namespace) -> dict[str, Any]:
    from infra.cassandra import Cassandra
    from projections.timelines_cassandra import CassandraTimelineStore

    keyspace = f"bench_{uuid.uuid4().hex[:12]}"
    stores = lambda hosts: [CassandraTimelineStore(hosts, keyspace, RETENTION_MS) for _ in range(2)]  # noqa: E731
    if args.hosts:
        return asyncio.run(run(args, *stores(args.hosts.split(",")), None))
    base = Path(tempfile.mkdtemp(prefix="bench-cassandra-"))
    node = Cassandra(base, **({"heap": args.heap} if args.heap else {}))
    try:
        started = time.monotonic()
        node.start().wait_ready()
        first_start = time.monotonic() - started
        result = asyncio.run(run(args, *stores([node.contact_point]), node.pid))
        result["node_rss_mib"] = round(int(next(line.split()[1] for line in open(f"/proc/{node.pid}/status")
                                                 if line.startswith("VmRSS"))) / 1024)
        node.stop()
        started = time.monotonic()
        node.start().wait_ready()
        result["node_start_s"] = {"empty_dir": round(first_start, 1), "restart": round(time.monotonic() - started, 1)}
        result["after_restart"] = asyncio.run(last_seq_of(keyspace, node.contact_point, *result["check_conversation"]))
        return result
    finally:
        node.stop()
        shutil.rmtree(base, ignore_errors=True)


async def last_seq_of(keyspace: str, host: str, conversation_id: str, expected: int) -> str:
    from projections.timelines_cassandra import CassandraTimelineStore

    store = CassandraTimelineStore([host], keyspace, RETENTION_MS)
    await store.open()
    try:
        found = await store.last_seq(conversation_id)
    finally:
        await store.close()
    return f"last seq of {conversation_id}: {found} (written {expected})"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = bench_sqlite(args) if args.backend == "sqlite" else bench_cassandra(args)
    result = {"backend": args.backend, "rate": args.rate, "duration_s": args.duration,
              "conversations": args.conversations, "reads": args.reads, **result}
    result.pop("check_conversation", None)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
