"""What consuming one event costs a worker, by consumer: Faust's agent against librdkafka.

    python -m bench.consume_cost [--events 100000 --partitions 4 --runs 2 --rate 0]

Starts a ``LocalStack`` (Apache Kafka), writes ``--events`` ``MessageAccepted`` envelopes (the
events topic's records, as the sequencer writes them) to a topic of ``--partitions``, then
reads them all back, each reader in a process of its own, and measures the CPU time of the
process (user + system, all threads) from its first event to its last:

- ``faust``: a Faust app with one agent over the topic, as the worker's: aiokafka in Faust's
  consumer thread, the conductor decoding each record with the project's codec, and
  ``streams.batching.take_batches`` (500 events or 5 ms) in the agent;
- ``librdkafka + decode``: confluent-kafka's ``Consumer.consume`` in batches of 500, each value
  decoded with the same codec;
- ``librdkafka``: the same without decoding.

The difference between the first two is what Faust's consumer path costs per event beyond
reading and decoding it. With ``--rate R`` each reader is started first and the events are
written at R a second while it reads (a worker's steady state rather than a backlog). Nothing here touches Redis or the stores. Appends to RESULTS.md only
with ``--results``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

BATCH, WITHIN_S = 500, 0.005


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def _records(events: int, partitions: int) -> Any:
    from chat.codec import default_codec
    from chat.events import MessageAccepted, Origin, Sealed

    codec = default_codec()
    for i in range(events):
        cid = f"c{i % 1000:04d}"
        event = MessageAccepted(conversation_id=cid, seq=i // 1000 + 1, message_id=f"m{i:012d}",
                                sender_id=f"u{i % 997:05d}", client_msg_id=f"cm{i:010d}", body="",
                                sent_at=1_764_700_000_000 + i, origin=Origin("gw-1", "dev-1", f"r{i}"),
                                sealed=Sealed(os.urandom(12), os.urandom(80)))
        yield codec.encode(event, key=cid), cid.encode(), i % partitions


def produce(bootstrap: str, topic: str, events: int, partitions: int, rate: float = 0) -> None:
    """Write the events, all at once (``rate`` 0) or ``rate`` a second (with linger 1 ms, as the
    worker's producer)."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1 if rate else 5,
                         "queue.buffering.max.messages": 1_000_000})
    t0 = time.monotonic()
    for i, (value, key, partition) in enumerate(_records(events, partitions)):
        if rate:
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        producer.produce(topic, value, key=key, partition=partition)
        producer.poll(0)
    producer.flush(60)


def read_librdkafka(bootstrap: str, topic: str, events: int, decode: bool, out: Any) -> None:
    from confluent_kafka import Consumer

    from chat.codec import default_codec

    codec = default_codec()
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"cost-{uuid.uuid4().hex[:8]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": True})
    consumer.subscribe([topic])
    seen, start = 0, None
    while seen < events:
        for record in consumer.consume(BATCH, 1.0):
            if record.error():
                continue
            if start is None:
                start = _cpu(), time.monotonic()
                out.put("started")
            if decode:
                codec.decode(record.value())
            seen += 1
    out.put((_cpu() - start[0], time.monotonic() - start[1], seen))
    consumer.close()


def read_faust(bootstrap: str, topic: str, events: int, datadir: str, ours: bool, out: Any) -> None:
    import faust
    from faust.serializers import codecs

    from chat.codec import default_codec
    from faust.transport.drivers import aiokafka as faust_aiokafka

    from streams import transport
    from streams.batching import take_batches

    class Envelopes(codecs.Codec):
        def _loads(self, data: bytes) -> Any:
            return default_codec().decode(data)

        def _dumps(self, obj: Any) -> bytes:
            return bytes(obj)

    codecs.register("cost_avro", Envelopes())

    class App(faust.App):  # with ``ours``, the worker's transport (streams.app.ChatApp)
        def _new_transport(self) -> Any:
            return (transport.Transport if ours else faust_aiokafka.Transport)(self.conf.broker_consumer, self)

    app = App(f"cost-{uuid.uuid4().hex[:8]}", broker=f"kafka://{bootstrap}", web_enabled=False,
                    consumer_auto_offset_reset="earliest", datadir=datadir,
                    stream_wait_empty=False)
    source = app.topic(topic, key_type=bytes, key_serializer="raw", value_serializer="cost_avro", internal=False)
    state: dict[str, Any] = {"seen": 0, "start": None}

    @app.agent(source)
    async def count(stream: Any) -> None:
        async for batch in take_batches(stream, BATCH, WITHIN_S):
            if state["start"] is None:
                state["start"] = _cpu(), time.monotonic()
                out.put("started")
            state["seen"] += len(batch)
            if state["seen"] >= events:
                out.put((_cpu() - state["start"][0], time.monotonic() - state["start"][1], state["seen"]))
                out.close()
                out.join_thread()  # the queue's feeder thread has written it
                os._exit(0)

    worker = faust.Worker(app, loglevel="WARNING", quiet=True)
    worker.execute_from_commandline()


def measure(target: Any, args: tuple, bootstrap: str, events: int, partitions: int, rate: float
            ) -> tuple[float, float, int]:
    """Run one reader over a fresh topic; with ``rate``, the reader is started first and the
    events are written at that rate once it has read a first one."""
    from infra.topics import ensure_topics

    topic = f"cost-{uuid.uuid4().hex[:8]}"
    ensure_topics(bootstrap, {topic: partitions})
    if not rate:
        produce(bootstrap, topic, events, partitions)
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=target, args=(bootstrap, topic, events + (1 if rate else 0)) + args + (out,))
    proc.start()
    try:
        if rate:
            produce(bootstrap, topic, 1, partitions)  # the first event: the reader is consuming
        assert out.get(timeout=120) == "started"
        if rate:
            produce(bootstrap, topic, events, partitions, rate)
        return out.get(timeout=600)
    finally:
        proc.join(10)
        if proc.is_alive():
            proc.kill()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.consume_cost", description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--runs", type=int, default=2, help="reads per consumer (the best is reported)")
    p.add_argument("--readers", default="faust,decode,raw",
                   help="which readers, comma-separated: faust, faust-stock, decode, raw")
    p.add_argument("--rate", type=float, default=0,
                   help="events/s written while the reader runs (0: all written before it starts)")
    p.add_argument("--results", type=Path, help="append a section to this markdown file")
    args = p.parse_args(argv)
    from infra.stack import LocalStack

    readers = {
        "faust": ("the worker's Faust (aiokafka, conductor, take_batches) + decode", read_faust, (None, True)),
        "faust-stock": ("Faust as it comes (a task per record hand-over) + decode", read_faust, (None, False)),
        "decode": ("librdkafka consume(500) + decode", read_librdkafka, (True,)),
        "raw": ("librdkafka consume(500)", read_librdkafka, (False,)),
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp, LocalStack(Path(tmp) / "stack", topics={}) as stack:
        for key in args.readers.split(","):
            name, target, targs = readers[key]
            if target is read_faust:
                targs = (str(Path(tmp) / "faust"),) + targs[1:]
            best = min((measure(target, targs, stack.bootstrap, args.events, args.partitions, args.rate)
                        for _ in range(args.runs)), key=lambda r: r[0])
            cpu, wall, seen = best
            rows.append((name, cpu, wall, seen))
            print(f"{name}: {1e6 * cpu / seen:.1f} us CPU per event ({cpu:.2f} CPU-s, {wall:.2f} s wall, {seen} events)",
                  file=sys.stderr)
    lines = ["| reader | CPU per event | CPU-s | wall s | events/s |", "|---|---|---|---|---|"]
    lines += [f"| {n} | {1e6 * c / s:.1f} us | {c:.2f} | {w:.2f} | {s / w:,.0f} |" for n, c, w, s in rows]
    print("\n".join(lines))
    if args.results:
        from bench.run_local import append_section
        append_section("What consuming an event costs, by consumer",
                       f"python -m bench.consume_cost {' '.join(argv or sys.argv[1:])}", lines, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
