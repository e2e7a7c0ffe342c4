"""Takeover of a partition: kill -9 the worker that sequences it, start another, time the first ack.

    .venv/bin/python -m bench.takeover [--events 10000 1000000] [--conversations 1000] [--write]

Per figure of ``--events``, on a fresh local stack (Apache Kafka, Redis) with one partition: writes
that many events straight to the events topic with the codec (``ConversationCreated`` and
``MessageAccepted``, as ``bench/replay_rebuild.py`` does), moves the projector's committed offset
to the end (it would only compete for the two cores), then runs real workers
(``python -m streams.worker``): the first rebuilds the partition from the whole log (the recovery
of before snapshots, timed from its log) and writes its first round of snapshots; once that
round's checkpoint is on the snapshots topic and the worker has acked one message, it is killed
with SIGKILL and a second worker is started, with one command waiting for it. Reported: the second
worker's recovery (from its log), partition assignment to first ack, and kill to first ack (which
includes process start-up and the group's session timeout, 6 s here, for the dead member).
``--write`` appends the table to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, TopicPartition

from bench.replay_rebuild import fill
from bench.run_local import append_results, machine_line
from chat.events import MessageAccepted, MessageSendRequested, Origin
from infra.stack import LocalStack
from streams.snapshot_state import CHECKPOINT_KEY
from tests.support import CommandProducer, PartitionReader, System

ORIGIN = Origin(gateway_id="bench", device_id="d")
ROOT = Path(__file__).resolve().parent.parent


def log_lines(worker) -> list[dict]:  # type: ignore[no-untyped-def]
    lines = []
    for line in Path(worker.log_path).read_text().splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    return lines


def wait_log(worker, pattern: str, timeout: float) -> tuple[float, str]:  # type: ignore[no-untyped-def]
    """(wall time, message) of the first log line of ``worker`` matching ``pattern``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in log_lines(worker):
            if re.search(pattern, entry.get("msg", "")):
                return datetime.fromisoformat(entry["ts"]).timestamp(), entry["msg"]
        if not worker.running:
            raise RuntimeError(f"worker exited:\n{worker.log_tail(30)}")
        time.sleep(0.2)
    raise TimeoutError(f"no log line {pattern!r} after {timeout}s:\n{worker.log_tail(30)}")


def end_offset(settings, topic: str) -> int:  # type: ignore[no-untyped-def]
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": "bench", "log_level": 0})
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
    finally:
        consumer.close()


def skip_projection(settings) -> None:  # type: ignore[no-untyped-def]
    """Commit the worker group's events offset at the end: the projector starts there."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": settings.app_id, "log_level": 0})
    end = end_offset(settings, settings.events_topic)
    try:
        for attempt in range(20):  # the group coordinator may still be moving in (NOT_COORDINATOR)
            try:
                consumer.commit(offsets=[TopicPartition(settings.events_topic, 0, end)], asynchronous=False)
                return
            except KafkaException:
                if attempt == 19:
                    raise
                time.sleep(0.5)
    finally:
        consumer.close()


def acked(reader: PartitionReader, client_msg_id: str, timeout: float) -> float:
    reader.read_until(lambda rs: any(isinstance(r.event, MessageAccepted) and r.event.client_msg_id == client_msg_id
                                     for r in rs[-50:]), timeout, f"{client_msg_id} accepted")
    return time.time()


def checkpointed(settings, timeout: float) -> None:  # type: ignore[no-untyped-def]
    """Wait until a snapshot round's checkpoint is on the snapshots topic."""
    reader = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": "bench-snap", "log_level": 0,
                       "isolation.level": "read_committed", "auto.offset.reset": "earliest"})
    reader.assign([TopicPartition(settings.snapshots_topic, 0, 0)])
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if any(m.error() is None and m.key() == CHECKPOINT_KEY for m in reader.consume(1000, 0.5)):
                return
        raise TimeoutError(f"no snapshot checkpoint after {timeout}s")
    finally:
        reader.close()


def send(producer: CommandProducer, c: int, client_msg_id: str) -> None:
    cid = f"g_bench{c:05d}"
    producer.send(MessageSendRequested(conversation_id=cid, sender_id=f"u{c}", client_msg_id=client_msg_id,
                                       body="after the takeover", origin=ORIGIN))
    producer.flush()


def run(events: int, conversations: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp, LocalStack(Path(tmp) / "stack", topics={}) as stack:
        system = System(stack, Path(tmp), partitions=1, CHAT_SNAPSHOT_INTERVAL_S="2",
                        CHAT_KAFKA_SESSION_TIMEOUT_S="6", CHAT_LOG_LEVEL="INFO")
        settings = system.settings
        started = time.monotonic()
        written = fill(settings, events, conversations)
        fill_s = time.monotonic() - started
        skip_projection(settings)
        producer = CommandProducer(settings)
        reader = PartitionReader(settings.kafka_bootstrap, settings.events_topic, 0)
        reader.consumer.seek(TopicPartition(settings.events_topic, 0, end_offset(settings, settings.events_topic)))
        try:
            first = system.start_worker()
            _, full = wait_log(first, r"^recovered partition 0", 900)
            checkpointed(settings, 300)
            send(producer, 0, "before-kill")
            acked(reader, "before-kill", 60)
            killed = time.time()
            os.kill(first.pid, signal.SIGKILL)
            first.proc.wait(10)
            second = system.start_worker()
            send(producer, conversations // 2, "after-kill")
            ack = acked(reader, "after-kill", 120)
            assigned, _ = wait_log(second, r"^partitions assigned", 10)
            _, recovered = wait_log(second, r"^recovered partition 0", 10)
            _, fenced = wait_log(second, r"^partition 0 fenced", 10)
        finally:
            reader.close()
            system.stop()
    return {"events": written, "fill_s": round(fill_s, 1), "full_replay": full, "fenced": fenced,
            "recovered": recovered, "assigned_to_ack_s": round(ack - assigned, 2),
            "kill_to_ack_s": round(ack - killed, 2)}


def seconds_in(message: str) -> str:
    found = re.findall(r"in ([\d.]+)s", message)
    return f"{float(found[-1]):.2f} s" if found else "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--conversations", type=int, default=1_000)
    parser.add_argument("--write", action="store_true", help="append the figures to bench/RESULTS.md")
    args = parser.parse_args()
    results = []
    for events in args.events:
        result = run(events, args.conversations)
        print(json.dumps(result), flush=True)
        results.append(result)
    if args.write:
        code = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
        lines = ["", f"## Partition takeover from snapshots, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
                 machine_line(),
                 f"Command: `.venv/bin/python -m bench.takeover --events {' '.join(map(str, args.events))} "
                 f"--conversations {args.conversations} --write` at {code} (Apache Kafka and Redis on this machine, "
                 "one partition, real workers).", "",
                 "| events in the partition | full replay (before) | takeover recovery (snapshots + tail) "
                 "| assignment → first ack | kill -9 → first ack |", "|---|---|---|---|---|"]
        for r in results:
            lines.append(f"| {r['events']:,} | {seconds_in(r['full_replay'])} | {seconds_in(r['recovered'])} "
                         f"| {r['assigned_to_ack_s']:.2f} s | {r['kill_to_ack_s']:.2f} s |")
        lines += ["", "Recovery log lines of the second worker:", ""]
        lines += [f"- {r['events']:,}: `{r['fenced']}`; `{r['recovered']}`" for r in results]
        append_results(lines)


if __name__ == "__main__":
    main()
