"""Resident memory of a real worker process serving N mostly idle conversations.

    .venv/bin/python -m bench.worker_memory [--conversations 1000000] [--hot 10000] [--write]

On a fresh local stack (Apache Kafka, Redis; the SQLite timeline, as ``make run``), one partition:

1. writes every conversation's events straight to the events topic with the codec, shaped as
   ``bench/sequencer_memory.py`` makes them (a ``ConversationCreated`` of 2-3 members, 2
   ``MessageAccepted`` and a ``ReceiptRecorded`` each), and moves the projector's committed
   offset to the end (``bench/takeover.py``: projecting them would only compete for the cores);
2. starts a worker (``python -m streams.worker``) that recovers the partition from the whole log
   (there are no snapshots yet: a first start), writes its first snapshot round and, after
   ``CHAT_SEQUENCER_IDLE_S``, freezes the idle conversations; its RSS is sampled throughout;
3. stops it and starts a second worker, which recovers from those snapshots (the path of a
   worker that takes over a partition it served before: every conversation cold), then sends
   ``--hot`` messages, each to a different conversation, through the commands topic, waits
   until all are accepted, and waits for the sweep that freezes them again.

RSS (``VmRSS``) and peak (``VmHWM``) come from ``/proc/<pid>/status`` of the worker process.
``--write`` appends the table to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

from confluent_kafka import Producer, TopicPartition

from bench.run_local import append_results, machine_line
from bench.sequencer_memory import ORIGIN, conversation_events, conversation_id, first_member
from bench.takeover import ROOT, checkpointed, end_offset, log_lines, skip_projection, wait_log
from chat.codec import default_codec
from chat.events import MessageAccepted, MessageSendRequested
from chat.settings import Settings
from infra.stack import LocalStack
from tests.support import CommandProducer, PartitionReader, System

MIB = 2**20


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in bytes."""
    out = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1]) * 1024
    return out


class Sampler(threading.Thread):
    """Samples a process's VmRSS every ``every`` seconds until stopped (or the process is gone)."""

    def __init__(self, pid: int, every: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.samples: list[tuple[float, int]] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.every):
            try:
                self.samples.append((time.time(), proc_status(self.pid)["VmRSS"]))
            except (OSError, KeyError):
                return

    def now(self) -> dict[str, float]:
        status = proc_status(self.pid)
        return {"rss_mib": round(status["VmRSS"] / MIB, 1), "hwm_mib": round(status["VmHWM"] / MIB, 1)}


def fill(settings: Settings, conversations: int, messages: int) -> int:
    """Write every conversation's events to events partition 0; returns how many."""
    codec, topic = default_codec(), settings.events_topic
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 50, "acks": "all",
                         "queue.buffering.max.messages": 1_000_000, "log_level": 0})
    now, written = int(time.time() * 1000), 0
    for c in range(conversations):
        cid = conversation_id(c)
        key = cid.encode()
        for event in conversation_events(c, conversations, messages, now):
            while True:
                try:
                    producer.produce(topic, codec.encode(event, key=cid), key=key, partition=0)
                    break
                except BufferError:
                    producer.poll(0.1)
            written += 1
        if c % 1_000 == 0:
            producer.poll(0)
    if producer.flush(300):
        raise RuntimeError("events not all written")
    return written


def first_start(system: System, conversations: int) -> dict[str, object]:
    """Worker 1: recovery from the whole log, the first snapshot round, the sweep; then stopped."""
    worker = system.start_worker()
    sampler = Sampler(worker.pid)
    sampler.start()
    started = time.time()
    try:
        recovered_at, recovered = wait_log(worker, r"^recovered partition 0", 1200)
        after_recovery = sampler.now()
        checkpointed(system.settings, 900)
        snapshotted_at = time.time()
        cold = int(re.search(r"\((\d+) cold\)", recovered).group(1))  # frozen while recovering
        swept_at, swept = wait_frozen(worker, conversations - cold, recovered_at, 900)
        time.sleep(5)
        after_sweep = sampler.now()
    finally:
        sampler.stopped.set()
        worker.stop(60)
    return {"recovered": recovered, "recovery_s": round(recovered_at - started, 1),
            "after_recovery": after_recovery, "snapshot_round_s": round(snapshotted_at - recovered_at, 1),
            "swept": swept, "after_sweep": after_sweep, "peak_mib": after_sweep["hwm_mib"],
            "samples": sampler.samples}


def send_hot(settings: Settings, conversations: int, hot: int) -> float:
    """One message to each of ``hot`` conversations spread over all; returns seconds to all acks."""
    producer = CommandProducer(settings)
    reader = PartitionReader(settings.kafka_bootstrap, settings.events_topic, 0)
    reader.consumer.seek(TopicPartition(settings.events_topic, 0, end_offset(settings, settings.events_topic)))
    step = max(1, conversations // hot)
    started = time.monotonic()
    try:
        for n in range(hot):
            c = n * step
            producer.send(MessageSendRequested(conversation_id=conversation_id(c), sender_id=first_member(c, conversations),
                                               client_msg_id=f"hot-{n}", body="hot again", origin=ORIGIN))
        producer.flush(120)
        reader.read_until(lambda rs: sum(isinstance(r.event, MessageAccepted) and r.event.client_msg_id.startswith("hot-")
                                         for r in rs) >= hot, 600, f"{hot} hot messages accepted")
        return time.monotonic() - started
    finally:
        reader.close()


def takeover(system: System, conversations: int, hot: int) -> dict[str, object]:
    """Worker 2: recovery from the snapshots, hot traffic, and the sweep after it."""
    worker = system.start_worker()
    sampler = Sampler(worker.pid)
    sampler.start()
    try:
        _, recovered = wait_log(worker, r"^recovered partition 0", 600)
        time.sleep(3)
        after_recovery = sampler.now()
        sending = time.time()
        hot_s = send_hot(system.settings, conversations, hot)
        after_hot = sampler.now()
        swept_at, swept = wait_frozen(worker, hot, sending, 600)
        time.sleep(3)
        after_sweep = sampler.now()
    finally:
        sampler.stopped.set()
        worker.stop(60)
    return {"recovered": recovered, "after_recovery": after_recovery, "hot_s": round(hot_s, 1),
            "after_hot": after_hot, "swept": swept, "after_sweep": after_sweep, "peak_mib": after_sweep["hwm_mib"],
            "samples": sampler.samples}


def wait_frozen(worker, total: int, since: float, timeout: float) -> tuple[float, list[str]]:  # type: ignore[no-untyped-def]
    """Wait until the sweeps logged after ``since`` (wall time) froze ``total`` conversations in
    all; returns the time of the last of those lines and their messages."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = [(datetime.fromisoformat(e["ts"]).timestamp(), e["msg"]) for e in log_lines(worker)
                 if e.get("msg", "").startswith("froze ")]
        lines = [(at, msg) for at, msg in lines if at > since]
        if sum(int(msg.split()[1]) for _, msg in lines) >= total:
            return lines[-1][0], [msg for _, msg in lines]
        if not worker.running:
            raise RuntimeError(f"worker exited:\n{worker.log_tail(30)}")
        time.sleep(1)
    raise TimeoutError(f"{total} conversations not frozen after {timeout}s:\n{worker.log_tail(30)}")


def run(conversations: int, messages: int, hot: int, idle_s: float) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp, LocalStack(Path(tmp) / "stack", topics={}) as stack:
        system = System(stack, Path(tmp), partitions=1, CHAT_SEQUENCER_IDLE_S=str(idle_s),
                        CHAT_LOG_LEVEL="INFO")
        try:
            started = time.monotonic()
            written = fill(system.settings, conversations, messages)
            fill_s = time.monotonic() - started
            print(json.dumps({"events": written, "fill_s": round(fill_s, 1)}), flush=True)
            skip_projection(system.settings)
            first = first_start(system, conversations)
            print(json.dumps({k: v for k, v in first.items() if k != "samples"}), flush=True)
            second = takeover(system, conversations, hot)
            print(json.dumps({k: v for k, v in second.items() if k != "samples"}), flush=True)
        finally:
            system.stop()
    return {"conversations": conversations, "messages": messages, "hot": hot, "idle_s": idle_s,
            "events": written, "fill_s": round(fill_s, 1), "first": first, "second": second}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=1_000_000)
    parser.add_argument("--messages", type=int, default=2)
    parser.add_argument("--hot", type=int, default=10_000, help="conversations sent one message after the takeover")
    parser.add_argument("--idle-s", type=float, default=10.0, help="CHAT_SEQUENCER_IDLE_S of the workers")
    parser.add_argument("--samples", type=Path, help="write the RSS samples (JSON) here")
    parser.add_argument("--write", action="store_true", help="append the figures to bench/RESULTS.md")
    args = parser.parse_args()
    result = run(args.conversations, args.messages, args.hot, args.idle_s)
    if args.samples:
        args.samples.write_text(json.dumps({k: result[k]["samples"] for k in ("first", "second")}))  # type: ignore[index]
    if args.write:
        append_results(results_lines(result, args))


def results_lines(r: dict, args: argparse.Namespace) -> list[str]:  # type: ignore[type-arg]
    code = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    first, second = r["first"], r["second"]
    return ["", f"## A worker process serving {r['conversations']:,} conversations, "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "", machine_line(),
            f"Command: `.venv/bin/python -m bench.worker_memory --conversations {r['conversations']} --hot {r['hot']} "
            f"--idle-s {r['idle_s']:g} --write` at {code} (Apache Kafka, Redis and the SQLite timeline on this "
            f"machine, one partition, real workers; {r['events']:,} events written in {r['fill_s']} s).", "",
            "| worker | moment | VmRSS | VmHWM (peak so far) |", "|---|---|---|---|",
            f"| 1 (whole log) | recovered ({first['recovery_s']} s) | {first['after_recovery']['rss_mib']} MiB "
            f"| {first['after_recovery']['hwm_mib']} MiB |",
            f"| 1 | first snapshot round written, idle conversations frozen | {first['after_sweep']['rss_mib']} MiB "
            f"| {first['after_sweep']['hwm_mib']} MiB |",
            f"| 2 (snapshots) | recovered | {second['after_recovery']['rss_mib']} MiB "
            f"| {second['after_recovery']['hwm_mib']} MiB |",
            f"| 2 | {r['hot']:,} messages to {r['hot']:,} conversations accepted ({second['hot_s']} s) "
            f"| {second['after_hot']['rss_mib']} MiB | {second['after_hot']['hwm_mib']} MiB |",
            f"| 2 | those frozen again | **{second['after_sweep']['rss_mib']} MiB** "
            f"| **{second['after_sweep']['hwm_mib']} MiB** |", "",
            f"Worker 1: `{first['recovered']}`; sweeps: `{'; '.join(first['swept'])}`.",
            f"Worker 2: `{second['recovered']}`; sweeps: `{'; '.join(second['swept'])}`."]


if __name__ == "__main__":
    main()
