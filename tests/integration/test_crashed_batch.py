"""A batch whose agent crashed is never committed (``streams.batching.take_batches``), on a real
Kafka with a Faust worker that stops on an agent's crash as the stream worker does: the worker
that takes the partition over reads that batch again.

Found by ``make test-cluster``: the projector crashed on a Redis error mid-batch, the batch was
acked as its generator closed, the stopping worker committed it, and the timeline never got 17
messages whose senders had their acks."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from infra.topics import ensure_topics


def committed(bootstrap: str, group: str, topic: str) -> int:
    """The group's committed offset of partition 0 (negative when none); retried while the
    group's coordinator is still being found or loaded."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        for attempt in range(50):
            try:
                return consumer.committed([TopicPartition(topic, 0)], timeout=10)[0].offset
            except KafkaException:
                time.sleep(0.2)
        raise AssertionError(f"no committed offsets of {group} could be read")
    finally:
        consumer.close()


def produce(bootstrap: str, topic: str, values: list[str]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for value in values:
        producer.produce(topic, value.encode(), partition=0)
    assert producer.flush(30) == 0


def test_a_crashed_batch_is_not_committed(stack, tmp_path):
    topic, group = f"crash-{uuid.uuid4().hex[:8]}", f"crasher-{uuid.uuid4().hex[:8]}"
    ensure_topics(stack.bootstrap, {topic: 1})
    produce(stack.bootstrap, topic, ["0", "1", "2", "3", "4"])
    worker = subprocess.Popen([sys.executable, "-m", "tests.integration.faust_crash", stack.bootstrap, topic, group,
                               str(tmp_path / "faust")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while committed(stack.bootstrap, group, topic) != 5:  # the handled batches are committed
            assert worker.poll() is None and time.monotonic() < deadline, "the first records were never committed"
            time.sleep(0.2)
        produce(stack.bootstrap, topic, ["crash", "6", "7"])
        worker.wait(timeout=60)  # stopped on its agent's crash
    finally:
        worker.kill()
    assert committed(stack.bootstrap, group, topic) == 5  # "crash" (offset 5) is read again
