"""Where the time goes: per-message stage latencies from the records the system wrote.

After a run, read the commands, events and delivery topics from the start and match the
records to the load generator's messages by ``(sender_id, client_msg_id)``. Each record
carries the producer's CreateTime (librdkafka stamps it at ``produce()``), so with the
client's wall-clock send and ack times (same machine, same clock) one message's send->ack
splits into:

1. client send -> command produced        (gateway: WebSocket frame, validation, membership)
2. command produced -> sequenced          (commands topic: produce, Faust fetch, sequencer; ``sent_at``)
3. sequenced -> event produced            (sequencer publishes MessageAccepted)
4. event produced -> ack delivery produced (events topic: Faust fetch, timeline, Redis, routing)
5. ack delivery produced -> ack at client  (delivery topic: gateway consumer, socket write)

This reads product records with the product's codec; it changes nothing.
"""

from __future__ import annotations

import time
from typing import Any, Iterable

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from bench.loadgen import percentiles
from chat.codec import default_codec
from chat.events import DeliveryBatch, MessageAccepted, MessageSendRequested

STAGES = [
    ("send_to_command", "client send → command produced (gateway)"),
    ("command_to_sequenced", "command produced → sequenced (commands topic + sequencer)"),
    ("sequenced_to_event", "sequenced → event produced"),
    ("event_to_ack_delivery", "event produced → ack delivery produced (events topic + projector)"),
    ("ack_delivery_to_client", "ack delivery produced → ack at client (delivery topic + gateway)"),
]


def read_all(bootstrap: str, topic: str, partitions: int, timeout_s: float = 30.0) -> list[tuple[int, bytes]]:
    """Every record of a topic, as (CreateTime ms, value), reading until each partition's EOF."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-trace-{time.time_ns()}",
                         "enable.auto.commit": False, "enable.partition.eof": True,
                         "fetch.wait.max.ms": 10})
    out: list[tuple[int, bytes]] = []
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        at_eof: set[int] = set()
        deadline = time.monotonic() + timeout_s
        while len(at_eof) < partitions and time.monotonic() < deadline:
            for msg in consumer.consume(5_000, 0.2):
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        at_eof.add(msg.partition())
                    continue
                at_eof.discard(msg.partition())
                out.append((msg.timestamp()[1], msg.value()))
    finally:
        consumer.close()
    return out


def trace(bootstrap: str, commands_topic: str, events_topic: str, delivery_topics: Iterable[str],
          partitions: int, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """``messages``: dicts with sender_id, client_msg_id, wall_send (s) and wall_ack (s or None)."""
    codec = default_codec()
    cmd_ts: dict[tuple[str, str], int] = {}
    for ts, value in read_all(bootstrap, commands_topic, partitions):
        ev = codec.decode(value).event
        if isinstance(ev, MessageSendRequested):
            cmd_ts.setdefault((ev.sender_id, ev.client_msg_id), ts)
    evt: dict[tuple[str, str], tuple[int, int]] = {}
    for ts, value in read_all(bootstrap, events_topic, partitions):
        ev = codec.decode(value).event
        if isinstance(ev, MessageAccepted):
            evt.setdefault((ev.sender_id, ev.client_msg_id), (ev.sent_at, ts))
    ack_ts: dict[tuple[str, str], int] = {}
    for topic in delivery_topics:
        for ts, value in read_all(bootstrap, topic, 1):
            record = codec.decode(value).event
            for ev in record.deliveries if isinstance(record, DeliveryBatch) else [record]:
                if ev.frame.startswith(b'{"type":"ack"') and ev.targets:
                    cmid = orjson.loads(ev.frame)["client_msg_id"]
                    ack_ts.setdefault((ev.targets[0].user_id, cmid), ts)
    stages: dict[str, list[float]] = {k: [] for k, _ in STAGES}
    complete = 0
    for m in messages:
        key = (m["sender_id"], m["client_msg_id"])
        c, e, a = cmd_ts.get(key), evt.get(key), ack_ts.get(key)
        if c is None or e is None or a is None or m.get("wall_ack") is None:
            continue
        complete += 1
        sent_at, e_ts = e
        send_ms, ack_ms = m["wall_send"] * 1000, m["wall_ack"] * 1000
        stages["send_to_command"].append(c - send_ms)
        stages["command_to_sequenced"].append(sent_at - c)
        stages["sequenced_to_event"].append(e_ts - sent_at)
        stages["event_to_ack_delivery"].append(a - e_ts)
        stages["ack_delivery_to_client"].append(ack_ms - a)
    return {"matched": complete, "of": len(messages), "commands": len(cmd_ts), "events": len(evt),
            "ack_deliveries": len(ack_ts),
            "stages_ms": {k: percentiles(v) for k, v in stages.items()}}


def markdown_rows(t: dict[str, Any]) -> list[str]:
    rows = ["| stage | p50 ms | p95 ms | p99 ms | max ms |", "|---|---|---|---|---|"]
    for key, label in STAGES:
        q = t["stages_ms"][key]
        rows.append(f"| {label} | {q['p50']} | {q['p95']} | {q['p99']} | {q['max']} |")
    return rows
