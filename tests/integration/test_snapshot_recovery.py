"""Takeover from snapshots: a worker killed after a snapshot round, the next one rebuilding from
the snapshots topic plus the events after its checkpoint, with no older events to fall back on;
and a worker that lost a partition unable to write its snapshots any more."""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from chat.codec import default_codec
from chat.errors import Unavailable
from chat.events import (
    ConversationCreateRequested, ConversationCreated, MessageAccepted, MessageDeduplicated, MessageRejected,
    MessageSendRequested, Origin, SnapshotCheckpoint,
)
from chat.ids import new_group_id
from streams.snapshot_state import CHECKPOINT_KEY
from streams.snapshots import SnapshotStore
from tests.support import CommandProducer, PartitionReader, System

ORIGIN = Origin(gateway_id="gw-test", device_id="dev1")
JOIN_TIMEOUT = 40.0


@pytest.fixture
def system(stack, tmp_path_factory):
    system = System(stack, tmp_path_factory.mktemp("snapshots"), partitions=1, CHAT_SNAPSHOT_INTERVAL_S="3")
    yield system
    system.stop()


def send(cid: str, sender: str, client_msg_id: str) -> MessageSendRequested:
    return MessageSendRequested(conversation_id=cid, sender_id=sender, client_msg_id=client_msg_id,
                                body=f"body of {client_msg_id}", origin=ORIGIN)


def of_type(records, cid: str, kind: type) -> list:
    return [r.event for r in records if isinstance(r.event, kind) and r.event.conversation_id == cid]


def events_end(settings) -> int:
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": "t", "log_level": 0})
    try:
        return consumer.get_watermark_offsets(TopicPartition(settings.events_topic, 0), timeout=10)[1]
    finally:
        consumer.close()


def checkpoint_covering(settings, offset: int, timeout: float = 20.0) -> SnapshotCheckpoint:
    """The first committed checkpoint of partition 0 whose offset is at least ``offset``."""
    codec = default_codec()
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"t-{uuid.uuid4().hex}",
                         "isolation.level": "read_committed", "log_level": 0})
    consumer.assign([TopicPartition(settings.snapshots_topic, 0, OFFSET_BEGINNING)])
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for msg in consumer.consume(500, 0.2):
                if msg.error() is None and msg.key() == CHECKPOINT_KEY:
                    checkpoint = codec.decode(msg.value()).event
                    if checkpoint.upto >= offset:
                        return checkpoint
        raise TimeoutError(f"no snapshot checkpoint covering events offset {offset} after {timeout}s")
    finally:
        consumer.close()


def delete_events_before(settings, offset: int) -> None:
    """Make the events before ``offset`` unreadable: only the snapshots hold them now."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    futures = admin.delete_records([TopicPartition(settings.events_topic, 0, offset)])
    for future in futures.values():
        future.result(30)


def test_resend_after_a_takeover_from_snapshots_gets_the_original_ack(system):
    first = system.start_worker()
    producer = CommandProducer(system.settings)
    alice, cid = f"alice-{uuid.uuid4().hex[:6]}", new_group_id()
    producer.send(ConversationCreateRequested(conversation_id=cid, kind="group", creator_id=alice, member_ids=["bob"],
                                              origin=ORIGIN, name="snapshots"))
    producer.send(send(cid, alice, "m1"))
    producer.flush()
    reader = PartitionReader(system.settings.kafka_bootstrap, system.settings.events_topic, 0)
    records = reader.read_until(lambda rs: len(of_type(rs, cid, MessageAccepted)) == 1, JOIN_TIMEOUT, "m1 accepted")
    (m1,) = of_type(records, cid, MessageAccepted)
    checkpoint = checkpoint_covering(system.settings, events_end(system.settings) - 1)
    producer.send(send(cid, alice, "m2"))  # after the round: in the events after the checkpoint, most likely
    producer.flush()
    records = reader.read_until(lambda rs: len(of_type(rs, cid, MessageAccepted)) == 2, 20, "m2 accepted")
    m2 = of_type(records, cid, MessageAccepted)[1]
    os.kill(first.pid, signal.SIGKILL)
    first.proc.wait(10)
    delete_events_before(system.settings, checkpoint.upto + 1)  # the conversation's creation and m1 among them

    second = system.start_worker()
    for client_msg_id in ("m1", "m2", "m3"):
        producer.send(send(cid, alice, client_msg_id))
    producer.flush()

    def answered(rs) -> bool:
        return (len(of_type(rs, cid, MessageDeduplicated)) >= 2 and len(of_type(rs, cid, MessageAccepted)) >= 3
                or bool(of_type(rs, cid, MessageRejected)))

    records = reader.read_until(answered, JOIN_TIMEOUT + 20, "the re-sends answered and m3 accepted")
    reader.close()
    assert of_type(records, cid, MessageRejected) == []  # the new worker knows the conversation
    with PartitionReader(system.settings.kafka_bootstrap, system.settings.events_topic, 0) as fresh:
        left = fresh.read_until(lambda rs: len(of_type(rs, cid, MessageAccepted)) >= 2, 20, "the events left")
    assert of_type(left, cid, ConversationCreated) == []
    assert "m1" not in {e.client_msg_id for e in of_type(left, cid, MessageAccepted)}
    again = {d.client_msg_id: d for d in of_type(records, cid, MessageDeduplicated)}
    for original in (m1, m2):
        assert (again[original.client_msg_id].seq, again[original.client_msg_id].message_id,
                again[original.client_msg_id].sent_at) == (original.seq, original.message_id, original.sent_at)
    accepted = of_type(records, cid, MessageAccepted)
    assert [(e.client_msg_id, e.seq) for e in accepted] == [("m1", 1), ("m2", 2), ("m3", 3)]  # each once
    assert second.running, second.log_tail()
    assert "snapshot records" in second.log_tail(200)


def test_a_worker_that_lost_the_partition_cannot_write_snapshots(system):
    settings = system.settings
    old = SnapshotStore(settings, 0)
    old.fence()
    old.write([(b"conv-1", b"first"), (CHECKPOINT_KEY, None)])
    new = SnapshotStore(settings, 0)
    new.fence()  # the takeover: the old owner's transactional id is fenced
    with pytest.raises(Unavailable):
        old.write([(b"conv-1", b"stale, from a zombie")])
    new.write([(b"conv-2", b"second")])
    loaded = new.load()
    assert loaded.conversations == {"conv-1": b"first", "conv-2": b"second"}
    assert loaded.checkpoint is None
    old.close()
    new.close()


def test_without_the_snapshots_topic_recovery_falls_back_to_the_whole_log(system):
    """A deployment upgraded without creating the topic: the partition still recovers."""
    from dataclasses import replace

    store = SnapshotStore(replace(system.settings, topic_prefix="absent."), 0)
    store.fence()
    loaded = store.load()
    assert (loaded.checkpoint, loaded.conversations, loaded.records) == (None, {}, 0)
    store.close()


def test_a_round_larger_than_the_producer_queue_is_written(system):
    """A first round after a replay holds every conversation of the partition: more records
    than the producer queues (20,000 by default; 100 here). Before, the round failed with a
    full queue (``BufferError``), every round again."""
    store = SnapshotStore(system.settings, 0, queue_records=100)
    store.fence()
    records = [(f"conv-{i}".encode(), b"x" * 200) for i in range(2_000)]
    store.write(records + [(CHECKPOINT_KEY, None)])
    assert len(store.load().conversations) == 2_000
    store.close()


def test_a_replay_of_the_whole_log_freezes_idle_conversations_and_its_first_round_writes_them(system, monkeypatch):
    """Recovery from the whole log (no snapshots yet) keeps as objects only the conversations
    its last stretch of events reached; the others go cold as it goes, and the first snapshot
    round writes them all, each thawing to the state a full replay gives."""
    import asyncio

    from confluent_kafka import Producer

    from bench.sequencer_memory import conversation_events, conversation_id
    from streams import recovery
    from streams.model import Sequencer
    from streams.snapshot_state import thaw
    from streams.snapshot_writer import SnapshotWriter

    settings, codec = system.settings, default_codec()
    events = [e for c in range(30) for e in conversation_events(c, 30, 2, 1_000)]  # 4 events each
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "log_level": 0})
    for event in events:
        producer.produce(settings.events_topic, codec.encode(event, key=event.conversation_id),
                         key=event.conversation_id.encode(), partition=0)
    assert producer.flush(30) == 0
    expected = Sequencer()
    expected.apply_all(events)
    monkeypatch.setattr(recovery, "FREEZE_EVERY", 20)

    async def replay_and_round():
        writer = SnapshotWriter(settings)
        store = await writer.take(0, len(events) - 1)
        sequencer = await recovery.recover(settings, 0, len(events) - 1, store)
        cold = set(sequencer.cold)
        assert await writer.round(lambda: {0: sequencer}) == 30
        await writer.close()
        return sequencer, cold

    sequencer, cold = asyncio.run(replay_and_round())
    assert len(cold) >= 25 and len(sequencer.conversations) <= 5  # the last 20 events reach 5
    loaded = SnapshotStore(settings, 0).load()
    assert loaded.checkpoint.upto == len(events) - 1
    assert sorted(loaded.conversations) == sorted(conversation_id(c) for c in range(30))
    for cid, blob in loaded.conversations.items():
        assert thaw(blob) == expected.conversations[cid], cid
