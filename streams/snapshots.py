"""The snapshots topic: one partition's sequencer snapshots, written in transactions and read back.

``<prefix>snapshots`` is compacted and partitioned like the events topic; partition ``p`` holds
the snapshots of events partition ``p``: one ``ConversationSnapshot`` per conversation (key: its
id), one ``BlocksSnapshot`` per direct conversation with blocks, and a ``SnapshotCheckpoint``
(key ``\\x00checkpoint``) that closes every round (``streams/snapshot_state.py``).

A round is one Kafka transaction of a producer whose ``transactional.id`` belongs to the
partition (``<app id>.snapshots.<p>``), and recovery reads with ``read_committed``. So a round is
all there or not at all, and a worker that takes the partition over fences the one before it
(``init_transactions`` bumps the id's epoch: a zombie's later writes fail, its open transaction
is aborted) before it reads: what it reads can never be overwritten by the worker that lost it.
All calls block; run them in a thread.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Iterable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition

from chat.secure import kafka_security
from chat.codec import default_codec
from chat.errors import SchemaError, Unavailable
from chat.events import BlocksSnapshot, SnapshotCheckpoint
from chat.settings import Settings
from infra.topics import SNAPSHOT_MAX_BYTES
from streams.snapshot_state import BLOCKS_PREFIX, CHECKPOINT_KEY

log = logging.getLogger(__name__)

_NO_TOPIC = (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC, KafkaError._UNKNOWN_PARTITION)
Record = tuple[bytes, bytes | None]  # (key, value); None: a tombstone


@dataclass
class Loaded:
    """A partition's snapshots as read: the last checkpoint (None: there is none), each
    conversation's encoded snapshot (a sequencer's cold form, decoded when first used), and the
    blocks records."""

    checkpoint: SnapshotCheckpoint | None = None
    conversations: dict[str, bytes] = field(default_factory=dict)
    blocks: dict[str, BlocksSnapshot] = field(default_factory=dict)
    records: int = 0


class SnapshotStore:
    """The snapshots of one partition, for the worker that owns it."""

    def __init__(self, settings: Settings, partition: int, timeout_s: float = 30.0,
                 queue_records: int = 20_000) -> None:
        self.settings = settings
        self.partition = partition
        self.topic = settings.snapshots_topic
        self.timeout_s = timeout_s
        self.producer = Producer({
            "bootstrap.servers": settings.kafka_bootstrap,
            "transactional.id": f"{settings.app_id}.snapshots.{partition}",
            "transaction.timeout.ms": 60_000,
            "message.max.bytes": SNAPSHOT_MAX_BYTES + 65_536,
            "linger.ms": 5,
            "queue.buffering.max.messages": queue_records,
            "compression.type": "lz4",
            "log_level": 3,
            **kafka_security(settings),
        })

    def fence(self) -> None:
        """Take the partition's transactional id: every earlier holder's writes fail from now on."""
        self.producer.init_transactions(self.timeout_s)

    def write(self, records: Iterable[Record]) -> None:
        """One round, all or nothing. Raises ``Unavailable`` (the round is aborted) when the
        broker refuses it, e.g. because a newer owner fenced this one."""
        try:
            self.producer.begin_transaction()
            for key, value in records:
                self._produce(key, value)
            self.producer.commit_transaction(self.timeout_s)
        except (KafkaException, BufferError) as exc:
            error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            if error is not None and error.txn_requires_abort():
                try:
                    self.producer.abort_transaction(self.timeout_s)
                except KafkaException:
                    pass
            raise Unavailable(f"snapshot round of partition {self.partition} failed: {exc}") from exc

    def _produce(self, key: bytes, value: bytes | None) -> None:
        """Queue one record, waiting while the producer's queue is full: a round can hold more
        records (a million conversations after a replay) than the queue holds (20,000 by
        default: about 10 MB of snapshots, copied by the producer until the broker has them)."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                self.producer.produce(self.topic, value, key=key, partition=self.partition)
                self.producer.poll(0)
                return
            except BufferError:
                if time.monotonic() > deadline:
                    raise
                self.producer.poll(0.01)

    def load(self) -> Loaded:
        """Read the partition's committed snapshots, the last record of each key winning."""
        codec = default_codec()
        consumer = Consumer({
            "bootstrap.servers": self.settings.kafka_bootstrap,
            "group.id": f"{self.settings.app_id}-snapshots",  # required; nothing is committed
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
            "fetch.wait.max.ms": 10,  # reading to the end: an empty fetch ends it, no wait for more
            "fetch.max.bytes": 104_857_600,
            "max.partition.fetch.bytes": SNAPSHOT_MAX_BYTES + 65_536,
            "log_level": 3,
            **kafka_security(self.settings),
        })
        loaded = Loaded()
        deadline = time.monotonic() + self.timeout_s * 4
        try:
            partition = TopicPartition(self.topic, self.partition, OFFSET_BEGINNING)
            consumer.assign([partition])
            # The end of a read_committed read is the last stable offset: below the high watermark
            # while a transaction's markers are still being written. Read on to the high watermark.
            try:
                end = consumer.get_watermark_offsets(partition, timeout=self.timeout_s)[1]
            except KafkaException as exc:
                if exc.args[0].code() not in _NO_TOPIC:
                    raise Unavailable(f"snapshots of partition {self.partition}: {exc.args[0].str()}") from exc
                return self._no_topic()
            while time.monotonic() < deadline:
                for msg in consumer.consume(10_000, 0.05):
                    if msg.error():
                        if msg.error().code() == KafkaError._PARTITION_EOF:
                            if msg.offset() >= end:
                                return loaded
                            continue
                        if msg.error().code() in _NO_TOPIC:
                            return self._no_topic()
                        raise Unavailable(f"reading snapshots of partition {self.partition}: {msg.error()}")
                    loaded.records += 1
                    _keep(loaded, msg.key(), msg.value(), codec)
            raise Unavailable(f"snapshots of partition {self.partition} not read to their end in time")
        finally:
            consumer.close()

    def _no_topic(self) -> Loaded:
        log.error("no topic %s (run python -m infra.topics): partition %d recovers from the whole events log, "
                  "and no snapshots are written", self.topic, self.partition)
        return Loaded()

    def close(self) -> None:
        self.producer.flush(5)


def _keep(loaded: Loaded, key: bytes, value: bytes | None, codec) -> None:  # type: ignore[no-untyped-def]
    text = key.decode()
    if key == CHECKPOINT_KEY:
        if value is not None:
            loaded.checkpoint = codec.decode(value).event
    elif text.startswith(BLOCKS_PREFIX):
        cid = text[len(BLOCKS_PREFIX):]
        if value is None:
            loaded.blocks.pop(cid, None)
        else:
            try:
                loaded.blocks[cid] = codec.decode(value).event
            except SchemaError as exc:
                raise Unavailable(f"undecodable blocks snapshot {text!r}: {exc}") from exc
    elif value is None:
        loaded.conversations.pop(text, None)
    else:
        loaded.conversations[text] = value
