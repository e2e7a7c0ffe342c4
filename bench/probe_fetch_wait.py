"""Probe: does the broker answer a Fetch as soon as data arrives, or only at fetch max wait?

    python -m bench.probe_fetch_wait [--messages 10 --gap 0.3]

Starts a ``LocalStack`` (Apache Kafka + Redis), creates one topic, and for each consumer
configuration below produces isolated records (``--gap`` seconds apart, acks=all) and
measures produce-call -> record-consumed latency. On a Kafka broker with fetch.min.bytes=1
the latency stays a few ms whatever the max wait; if it tracks the max wait, the broker
holds fetches until the wait expires. The configurations are those the system uses:
aiokafka with ``fetch_max_wait_ms=1500`` (hard-coded by Faust's aiokafka driver, which the
stream worker consumes with) and confluent-kafka with ``fetch.wait.max.ms`` 5 (the gateway's
delivery consumer) and 500 (librdkafka's default, used by partition recovery).

With ``--consume-batches`` it also measures confluent-kafka's ``consume(num_messages, timeout)``
(fetch.wait.max.ms=5): in 2.16 it waits for ``num_messages`` records or the whole timeout, so a
lone record waits up to ``timeout``. The gateway's delivery consumer calls ``consume(1000, 0.1)``
and partition recovery ``consume(5000, 0.5)``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import threading
import time
from pathlib import Path
from time import perf_counter

from confluent_kafka import Consumer, Producer, TopicPartition

from bench.loadgen import percentiles

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from infra.stack import LocalStack  # noqa: E402


def confluent_probe(bootstrap: str, topic: str, wait_ms: int, n: int, gap: float) -> list[float]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-{wait_ms}",
                         "enable.auto.commit": False, "fetch.wait.max.ms": wait_ms, "fetch.min.bytes": 1})
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0})
    # start at the end
    _, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    consumer.assign([TopicPartition(topic, 0, max(high, 0))])
    sent: dict[bytes, float] = {}
    lat: list[float] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            m = consumer.poll(0.05)  # one record: returns as soon as it is there
            if m is not None and m.error() is None and m.value() in sent:
                lat.append((perf_counter() - sent[m.value()]) * 1000)

    t = threading.Thread(target=read, daemon=True)
    t.start()
    time.sleep(1.0)
    for i in range(n):
        key = f"c{wait_ms}-{i}".encode()
        sent[key] = perf_counter()
        producer.produce(topic, key)
        producer.flush(5)
        time.sleep(gap)
    deadline = time.monotonic() + 5
    while len(lat) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    t.join(2)
    consumer.close()
    return lat


async def aiokafka_probe(bootstrap: str, topic: str, wait_ms: int, n: int, gap: float) -> list[float]:
    from aiokafka import AIOKafkaConsumer, TopicPartition as ATP

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                fetch_max_wait_ms=wait_ms, group_id=None)
    await consumer.start()
    tp = ATP(topic, 0)
    consumer.assign([tp])
    await consumer.seek_to_end(tp)
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0})
    sent: dict[bytes, float] = {}
    lat: list[float] = []

    async def read() -> None:
        while len(lat) < n:
            batch = await consumer.getmany(timeout_ms=100)
            now = perf_counter()
            for records in batch.values():
                for r in records:
                    if r.value in sent:
                        lat.append((now - sent[r.value]) * 1000)

    reader = asyncio.create_task(read())
    await asyncio.sleep(1.0)
    for i in range(n):
        key = f"a{wait_ms}-{i}".encode()
        sent[key] = perf_counter()
        producer.produce(topic, key)
        await asyncio.to_thread(producer.flush, 5)
        await asyncio.sleep(gap)
    try:
        await asyncio.wait_for(reader, 8)
    except asyncio.TimeoutError:
        pass
    await consumer.stop()
    return lat


def consume_batch_probe(bootstrap: str, topic: str, num: int, timeout: float, n: int, gap: float) -> list[float]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-batch-{num}-{timeout}",
                         "enable.auto.commit": False, "fetch.wait.max.ms": 5, "fetch.min.bytes": 1})
    _, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    consumer.assign([TopicPartition(topic, 0, max(high, 0))])
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0})
    sent: dict[bytes, float] = {}
    lat: list[float] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            batch = consumer.consume(num, timeout)
            now = perf_counter()
            for m in batch:
                if m.error() is None and m.value() in sent:
                    lat.append((now - sent[m.value()]) * 1000)

    t = threading.Thread(target=read, daemon=True)
    t.start()
    time.sleep(1.0)
    for i in range(n):
        key = f"b{num}-{timeout}-{i}".encode()
        sent[key] = perf_counter()
        producer.produce(topic, key)
        producer.flush(5)
        time.sleep(gap)
    time.sleep(timeout + 0.5)
    stop.set()
    t.join(timeout + 2)
    consumer.close()
    return lat


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.probe_fetch_wait")
    p.add_argument("--messages", type=int, default=10)
    p.add_argument("--gap", type=float, default=0.3)
    p.add_argument("--confluent-waits", default="5,500", help="fetch.wait.max.ms values, comma-separated")
    p.add_argument("--aiokafka-waits", default="1500,100", help="fetch_max_wait_ms values, comma-separated")
    p.add_argument("--consume-batches", action="store_true",
                   help="also probe confluent-kafka consume(num_messages, timeout) batching")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="chat-probe-") as base:
        topic = "probe.fetch"
        with LocalStack(base, topics={topic: 1}) as stack:
            rows = []
            for wait in [int(w) for w in args.confluent_waits.split(",") if w]:
                rows.append((f"confluent-kafka fetch.wait.max.ms={wait}",
                             confluent_probe(stack.bootstrap, topic, wait, args.messages, args.gap)))
            for wait in [int(w) for w in args.aiokafka_waits.split(",") if w]:
                rows.append((f"aiokafka fetch_max_wait_ms={wait}",
                             asyncio.run(aiokafka_probe(stack.bootstrap, topic, wait, args.messages, args.gap))))
            if args.consume_batches:
                for num, timeout in ((1, 0.1), (1000, 0.1), (1000, 0.01), (5000, 0.5)):
                    rows.append((f"confluent consume({num}, {timeout}), wait 5 ms",
                                 consume_batch_probe(stack.bootstrap, topic, num, timeout, args.messages, args.gap)))
    print(f"isolated records, {args.gap}s apart; produce call -> consumed, ms")
    for name, lat in rows:
        q = percentiles(lat)
        print(f"{name:42} n={q['n']:3} p50={q['p50']} p99={q['p99']} max={q['max']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
