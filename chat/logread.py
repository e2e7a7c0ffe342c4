"""Reading a range of a topic with confluent-kafka, for the ``chat`` command line.

A range ends at, per partition, either

- an explicit last offset (``stop``): a marker record the caller wrote and saw acked
  (``chat rebuild``), or ``--to-offset``; the reader waits for it, however long the log; or
- the partition's high watermark when the read starts (``stop`` absent): "the end as of now".
  Records written while it reads are not part of the range; use markers where they must be.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition

from chat.errors import Unavailable, UnknownTopic
from chat.secure import KafkaRefusal

QUIET = {"log_level": 0}


class TopicReader:
    """One topic's partitions, read without a consumer group's commits."""

    def __init__(self, bootstrap: str, topic: str, *, timeout: float = 10.0,
                 config: Mapping[str, Any] | None = None) -> None:
        """``config``: more librdkafka properties (a secured broker's: ``chat.secure.kafka_security``)."""
        self.bootstrap, self.topic, self.timeout = bootstrap, topic, timeout
        refusal = KafkaRefusal()
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": f"chat-cli-{uuid.uuid4().hex}",
            "enable.auto.commit": False, "enable.partition.eof": False,
            "fetch.wait.max.ms": 100, "fetch.max.bytes": 52_428_800, **QUIET, **(config or {}),
            "error_cb": refusal,
        })
        self.partitions = partitions_of(self.consumer, bootstrap, topic, timeout, refusal)

    def watermarks(self) -> dict[int, tuple[int, int]]:
        """partition -> (low, high): the first offset kept and the offset the next record gets."""
        return {p: self.consumer.get_watermark_offsets(TopicPartition(self.topic, p), self.timeout)
                for p in self.partitions}

    def offsets_at(self, ms: int) -> dict[int, int]:
        """partition -> first offset whose timestamp is at or after ``ms`` (-1: none yet)."""
        asked = [TopicPartition(self.topic, p, ms) for p in self.partitions]
        try:
            found = self.consumer.offsets_for_times(asked, self.timeout)
        except KafkaException as exc:
            raise Unavailable(f"the broker cannot look up offsets by time: {exc}") from exc
        return {tp.partition: tp.offset for tp in found}

    def read(self, start: dict[int, int], stop: dict[int, int] | None = None, *,
             give_up_s: float = 120.0) -> Iterator[list[Message]]:
        """Batches of records of ``start``'s partitions, from ``start[p]`` (an offset or
        ``OFFSET_BEGINNING``) up to ``stop[p]`` included, or without ``stop`` up to the high
        watermark as it is now (see the module); batches keep each partition's order."""
        if stop is None:
            stop = {p: high - 1 for p, (_, high) in self.watermarks().items() if p in start}
        last = {p: max(o, 0) - 1 for p, o in start.items()}  # OFFSET_BEGINNING is negative
        pending = {p for p in start if stop[p] > last[p]}
        self.consumer.assign([TopicPartition(self.topic, p, o) for p, o in start.items() if p in pending])
        heard = time.monotonic()
        while pending:
            batch = self._take(pending, stop, last)
            if batch:
                heard = time.monotonic()
                yield batch
            elif time.monotonic() - heard >= give_up_s:
                raise Unavailable(f"{self.topic}: nothing read for {give_up_s:.0f}s before the end of"
                                  f" partitions {sorted(pending)} (last offsets {last})")

    def _take(self, pending: set[int], stop: dict[int, int], last: dict[int, int]) -> list[Message]:
        batch = []
        for msg in self.consumer.consume(num_messages=5_000, timeout=0.2):
            p = msg.partition()
            if msg.error() is not None or p not in pending:
                continue
            if p in stop and msg.offset() > stop[p]:
                pending.discard(p)
                continue
            last[p] = msg.offset()
            batch.append(msg)
            if p in stop and msg.offset() == stop[p]:
                pending.discard(p)
        return batch

    def close(self) -> None:
        self.consumer.close()

    def __enter__(self) -> "TopicReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def partitions_of(client: Any, bootstrap: str, topic: str, timeout: float,
                  refusal: KafkaRefusal | None = None) -> list[int]:
    """The topic's partition numbers; ``Unavailable`` if the broker does not answer (saying
    why it refused the client, when ``refusal``, its ``error_cb``, heard that), ``UnknownTopic``
    if it has no such topic."""
    try:
        metadata = client.list_topics(timeout=timeout)
    except KafkaException as exc:
        what = f"the broker at {bootstrap} is unreachable ({exc.args[0].str()})"
        if refusal is not None:
            client.poll(0)  # serves error_cb, which list_topics does not
            what = refusal.explain(bootstrap, what)
        raise Unavailable(what) from exc
    found = metadata.topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        raise UnknownTopic(f"no topic {topic!r} on {bootstrap}")
    return sorted(found.partitions)


BEGINNING = OFFSET_BEGINNING
