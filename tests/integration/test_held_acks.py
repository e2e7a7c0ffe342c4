"""``take_batches``' held acks (``Batch.held_by``) on a real Kafka: a batch whose ack waits for
a future is not committed before the future is done, is committed after, and a batch whose
future failed is never committed, nor anything after it (the projector delivers a batch while
the next is written; its offsets must wait for its deliveries: streams/agents.py ``project``)."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from infra.topics import ensure_topics

HOLD, FAIL, PLAIN = 10, 5, 5


def committed(bootstrap: str, group: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        (tp,) = consumer.committed([TopicPartition(topic, 0)], timeout=10)
        return tp.offset
    finally:
        consumer.close()


def send(producer: Producer, topic: str, phase: str, count: int) -> None:
    for i in range(count):
        producer.produce(topic, f"{phase}-{i}".encode(), partition=0)
    producer.flush(30)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"the worker exited ({proc.returncode})"
        assert time.monotonic() < deadline, f"no {path.name}"
        time.sleep(0.05)


def test_held_batches_commit_once_their_future_succeeds_and_never_if_it_fails(stack, tmp_path):
    topic, group = f"held-{uuid.uuid4().hex[:8]}", f"holder-{uuid.uuid4().hex[:8]}"
    ensure_topics(stack.bootstrap, {topic: 1})
    producer = Producer({"bootstrap.servers": stack.bootstrap})
    send(producer, topic, "hold", HOLD)
    proc = subprocess.Popen([sys.executable, "-m", "tests.integration.faust_holder", stack.bootstrap, topic, group,
                             str(tmp_path), f"{HOLD},{FAIL},{PLAIN}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(tmp_path / "hold.done", proc)
        time.sleep(1.5)  # several of the worker's commit intervals (0.2 s)
        assert committed(stack.bootstrap, group, topic) < 0  # nothing: every record is held
        (tmp_path / "release").touch()
        deadline = time.monotonic() + 30
        while committed(stack.bootstrap, group, topic) != HOLD:
            assert time.monotonic() < deadline, "the released batch was never committed"
            time.sleep(0.2)

        send(producer, topic, "fail", FAIL)
        wait_for(tmp_path / "fail.done", proc)
        send(producer, topic, "plain", PLAIN)
        wait_for(tmp_path / "plain.done", proc)
        time.sleep(1.5)
        assert committed(stack.bootstrap, group, topic) == HOLD  # stuck before the failed batch
    finally:
        proc.kill()
        proc.wait(10)
