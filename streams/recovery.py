"""Rebuilding a partition's sequencer state from the events topic itself.

The events topic is the sequencer's changelog. A worker that takes over partition
``p`` first writes a ``PartitionFenced`` record with a fresh nonce to events ``p``
and waits until it is durable; then it reads the partition from the start up to
that record's offset. Everything written before the fence is in the state, and the
worker needs no end offset and no changelog of its own: the fence is acked after every
event another worker wrote before it, so the next ``seq`` is right even when a worker that
lost the partition is still finishing a batch. (Its cost grows with the partition's history.)
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from chat.codec import default_codec
from chat.errors import SchemaError, Unavailable
from chat.events import PartitionFenced
from chat.kafka import consume_available
from chat.secure import kafka_security
from chat.settings import Settings
from streams.model import Limits, Sequencer

log = logging.getLogger(__name__)


def limits_from(settings: Settings) -> Limits:
    return Limits(max_body_bytes=settings.max_body_bytes, max_members=settings.max_members_per_request,
                  dedup_window_ms=int(settings.dedup_window_s * 1000),
                  edit_window_ms=int(settings.edit_window_s * 1000), retention_ms=settings.retention_ms,
                  max_reactions_per_user=settings.max_reactions_per_user)


def new_fence(partition: int, worker_id: str) -> PartitionFenced:
    return PartitionFenced(partition=partition, worker_id=worker_id, nonce=uuid.uuid4().hex,
                           fenced_at=int(time.time() * 1000))


def replay_until(settings: Settings, partition: int, fence_offset: int, sequencer: Sequencer,
                 timeout_s: float = 600.0) -> int:
    """Apply events ``[0, fence_offset]`` of one partition; blocking, run it in a thread."""
    codec = default_codec()
    consumer = Consumer({
        "bootstrap.servers": settings.kafka_bootstrap,
        "group.id": f"{settings.app_id}-recovery",  # required by librdkafka; nothing is committed
        "enable.auto.commit": False,
        "enable.partition.eof": False,
        "fetch.max.bytes": 52_428_800,
        "fetch.wait.max.ms": settings.fetch_max_wait_ms,
        **kafka_security(settings),
    })
    applied = 0
    deadline = time.monotonic() + timeout_s
    try:
        consumer.assign([TopicPartition(settings.events_topic, partition, OFFSET_BEGINNING)])
        while time.monotonic() < deadline:
            for msg in consume_available(consumer, 5_000, 0.5):
                if msg.error():
                    if msg.error().code() != KafkaError._PARTITION_EOF:
                        log.warning("recovery read error on partition %d: %s", partition, msg.error())
                    continue
                if msg.offset() > fence_offset:
                    return applied
                try:
                    sequencer.apply(codec.decode(msg.value()).event)
                except SchemaError as exc:
                    log.error("skipping undecodable event at %d/%d: %s", partition, msg.offset(), exc)
                applied += 1
                if msg.offset() == fence_offset:
                    return applied
        raise Unavailable(f"recovery of partition {partition} did not reach offset {fence_offset}")
    finally:
        consumer.close()


async def recover(settings: Settings, partition: int, fence_offset: int) -> Sequencer:
    sequencer = Sequencer(limits_from(settings))
    started = time.monotonic()
    applied = await asyncio.to_thread(replay_until, settings, partition, fence_offset, sequencer)
    log.info("recovered partition %d: %d events, %d conversations in %.2fs", partition, applied,
             len(sequencer.conversations), time.monotonic() - started)
    return sequencer
