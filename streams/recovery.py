"""Rebuilding a partition's sequencer state: its last snapshots, then the events after them.

The events topic is the sequencer's log. A worker that takes over partition ``p`` first writes a
``PartitionFenced`` record with a fresh nonce to events ``p`` and waits until it is durable; it
takes the partition's snapshot transactional id (``streams/snapshots.py``: the worker before it
can write no snapshot any more) and reads the snapshots; then it reads the events partition from
just after the last snapshot round's checkpoint up to the fence, skipping what each
conversation's snapshot already includes (``streams/snapshot_state.py``). Everything written
before the fence is in the state, and the fence is acked after every event another worker wrote
before it, so the next ``seq`` is right even when a worker that lost the partition is still
finishing a batch. The time this takes grows with the live state and the events since the last
round (``snapshot_interval_s``), not with the partition's history; with no snapshots it is a
replay from offset 0.
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
from chat.kafka import RDKAFKA_LOG, consume_available
from chat.secure import kafka_security
from chat.settings import Settings
from streams.model import Limits, Sequencer
from streams.snapshot_state import apply_logged, freeze_idle, restore_blocks, thaw
from streams.snapshots import SnapshotStore

log = logging.getLogger(__name__)

# Every this many events of a replay, the conversations none of them reached go cold
# (``freeze_idle``): a replay of a long log holds only what it reached lately as objects.
FREEZE_EVERY = 100_000


def limits_from(settings: Settings) -> Limits:
    return Limits(max_body_bytes=settings.max_body_bytes, max_members=settings.max_members_per_request,
                  dedup_window_ms=int(settings.dedup_window_s * 1000),
                  edit_window_ms=int(settings.edit_window_s * 1000), retention_ms=settings.retention_ms,
                  max_reactions_per_user=settings.max_reactions_per_user)


def new_fence(partition: int, worker_id: str) -> PartitionFenced:
    return PartitionFenced(partition=partition, worker_id=worker_id, nonce=uuid.uuid4().hex,
                           fenced_at=int(time.time() * 1000))


def replay_until(settings: Settings, partition: int, fence_offset: int, sequencer: Sequencer,
                 timeout_s: float = 600.0, start: int = 0, stamps: dict[str, int] | None = None) -> int:
    """Apply events ``[start, fence_offset]`` of one partition over what ``stamps`` says the
    snapshots include (``apply_logged``); blocking, run it in a thread."""
    codec = default_codec()
    stamps = {} if stamps is None else stamps
    consumer = Consumer({
        "bootstrap.servers": settings.kafka_bootstrap,
        "group.id": f"{settings.app_id}-recovery",  # required by librdkafka; nothing is committed
        "enable.auto.commit": False,
        "enable.partition.eof": False,
        "fetch.max.bytes": 52_428_800,
        "queued.max.messages.kbytes": 16_384,  # read ahead 16 MB, not librdkafka's 64 MB: memory, not speed
        "fetch.wait.max.ms": settings.fetch_max_wait_ms,
        "logger": RDKAFKA_LOG,
        **kafka_security(settings),
    })
    applied = read = 0
    deadline = time.monotonic() + timeout_s
    try:
        consumer.assign([TopicPartition(settings.events_topic, partition, start or OFFSET_BEGINNING)])
        while time.monotonic() < deadline:
            for msg in consume_available(consumer, 5_000, 0.5):
                if msg.error():
                    if msg.error().code() != KafkaError._PARTITION_EOF:
                        log.warning("recovery read error on partition %d: %s", partition, msg.error())
                    continue
                if msg.offset() > fence_offset:
                    return applied
                try:
                    applied += apply_logged(sequencer, msg.offset(), codec.decode(msg.value()).event, stamps)
                except SchemaError as exc:
                    log.error("skipping undecodable event at %d/%d: %s", partition, msg.offset(), exc)
                read += 1
                if read % FREEZE_EVERY == 0 and sequencer.thaw is not None:
                    freeze_idle(sequencer, msg.offset())
                if msg.offset() == fence_offset:
                    return applied
        raise Unavailable(f"recovery of partition {partition} did not reach offset {fence_offset}")
    finally:
        consumer.close()


async def recover(settings: Settings, partition: int, fence_offset: int,
                  store: SnapshotStore | None = None) -> Sequencer:
    """The partition's sequencer as of its fence: from ``store``'s snapshots (it must hold the
    partition's transactional id already) and the events after them, or from the whole log."""
    sequencer = Sequencer(limits_from(settings), thaw=thaw)
    started = time.monotonic()
    stamps: dict[str, int] = {}
    start, records = 0, 0
    if store is not None:
        loaded = await asyncio.to_thread(store.load)
        sequencer.cold, records = loaded.conversations, loaded.records
        for blocks in loaded.blocks.values():
            restore_blocks(sequencer, blocks, stamps)
        if loaded.checkpoint is not None:
            start = loaded.checkpoint.upto + 1
    loaded_s, applied = time.monotonic() - started, 0
    if start <= fence_offset:
        applied = await asyncio.to_thread(replay_until, settings, partition, fence_offset, sequencer,
                                          start=start, stamps=stamps)
    sequencer.offset = max(fence_offset, start - 1)
    log.info("recovered partition %d: %d snapshot records (read in %.2fs), %d conversations (%d cold), then "
             "events %d..%d (%d applied) in %.2fs", partition, records, loaded_s,
             len(sequencer.cold) + len(sequencer.conversations), len(sequencer.cold), start, fence_offset, applied,
             time.monotonic() - started)
    return sequencer
