"""Replay and rebuild throughput on a topic of N events (default 100,000), on a fresh local stack.

    .venv/bin/python -m bench.replay_rebuild [--events 100000]

Starts Apache Kafka and Redis, writes ``ConversationCreated`` + ``MessageAccepted`` events
straight to the events topic with the codec (1,000 conversations), then times
``chat replay --topic <events> -o FILE`` and ``chat rebuild all`` as subprocesses (the real CLI),
and prints events/s. The figures are in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from confluent_kafka import Producer

from chat.codec import default_codec
from chat.events import ConversationCreated, Member, MessageAccepted, Origin
from chat.settings import Settings
from infra.stack import LocalStack
from infra.topics import core_topic_configs, core_topics, ensure_topics

ROOT = Path(__file__).resolve().parent.parent
ORIGIN = Origin(gateway_id="bench", device_id="d")


def fill(settings: Settings, events: int, conversations: int = 1_000) -> int:
    codec, topic = default_codec(), settings.events_topic
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "partitioner": "murmur2_random",
                         "linger.ms": 20, "acks": "all", "log_level": 0})
    now, written = int(time.time() * 1000), 0
    for c in range(conversations):
        cid = f"g_bench{c:05d}"
        producer.produce(topic, codec.encode(ConversationCreated(
            conversation_id=cid, kind="group", name=f"room {c}", description="",
            members=[Member(f"u{c}", "admin"), Member(f"v{c}", "member")], created_by=f"u{c}",
            created_at=now, origin=ORIGIN), key=cid), key=cid.encode())
        written += 1
    per = (events - written) // conversations
    for seq in range(1, per + 1):
        for c in range(conversations):
            cid = f"g_bench{c:05d}"
            producer.produce(topic, codec.encode(MessageAccepted(
                conversation_id=cid, seq=seq, message_id=f"m{c}-{seq}", sender_id=f"u{c}", client_msg_id=f"c{seq}",
                body="x" * 100, sent_at=now + seq, origin=ORIGIN), key=cid),
                key=cid.encode())
            written += 1
            if written % 10_000 == 0:
                producer.poll(0)
    producer.flush(120)
    return written


def timed(env: dict[str, str], *args: str) -> tuple[float, str]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "chat.cli", *args, "--no-progress"], env=env, cwd=ROOT,
                          capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"chat {' '.join(args)} failed: {done.stderr}")
    return time.monotonic() - started, done.stderr.strip()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, LocalStack(Path(tmp), topics={}) as stack:
        env = {**os.environ, "CHAT_KAFKA_BOOTSTRAP": stack.bootstrap, "CHAT_REDIS_URL": stack.redis_url,
               "CHAT_TOPIC_PREFIX": "bench.", "CHAT_DATA_DIR": f"{tmp}/data", "CHAT_PARTITIONS": "4"}
        settings = Settings.from_env(env)
        ensure_topics(stack.bootstrap, core_topics(settings), configs=core_topic_configs(settings))
        written = fill(settings, args.events)
        print(f"wrote {written:,} events to {settings.events_topic}")
        for label, cmd in (("replay jsonl", ("replay", "--topic", settings.events_topic, "-o", f"{tmp}/e.jsonl")),
                           ("replay avro", ("replay", "--topic", settings.events_topic, "--format", "avro",
                                            "-o", f"{tmp}/e.avro")),
                           ("rebuild timelines", ("rebuild", "timelines")),
                           ("rebuild all", ("rebuild", "all"))):
            seconds, report = timed(env, *cmd)
            rates = re.findall(r"\(([\d,]+) events/s\)", report)
            print(f"{label}: {seconds:.1f} s wall (process incl. start-up, idle wait) | {report}")
            print(f"  -> {label}: CLI-reported {rates}")


if __name__ == "__main__":
    main()
