"""The stream worker's consumer (streams/transport.py) on a real Kafka with a Faust worker
whose agent falls behind: hand-overs that wait for room go on where they stopped, and every
record arrives once, in partition order."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections import defaultdict

from confluent_kafka import Producer

from infra.topics import ensure_topics

COUNT, PARTITIONS = 2000, 4


def test_a_slow_agent_gets_every_record_once_in_order(stack, tmp_path):
    topic = f"handover-{uuid.uuid4().hex[:8]}"
    ensure_topics(stack.bootstrap, {topic: PARTITIONS})
    producer = Producer({"bootstrap.servers": stack.bootstrap, "linger.ms": 5})
    for i in range(COUNT):
        producer.produce(topic, f"{i}".encode(), partition=i % PARTITIONS)
    producer.flush(30)

    out = tmp_path / "read.json"
    subprocess.run([sys.executable, "-m", "tests.integration.faust_reader", stack.bootstrap, topic, str(COUNT),
                    str(out), str(tmp_path / "faust")], timeout=180, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    result = json.loads(out.read_text())
    assert result["waited"] > 0  # the buffer of 4 was full: some hand-overs went on in a task
    by_partition: dict[int, list[int]] = defaultdict(list)
    for partition, value in result["read"]:
        by_partition[partition].append(int(value))
    assert sum(len(v) for v in by_partition.values()) == COUNT
    for partition, values in by_partition.items():
        assert values == list(range(partition, COUNT, PARTITIONS)), f"partition {partition}"
