"""Commands to events to projections, through a real broker, Redis and one worker process.

No gateway: commands are produced as a gateway would (keyed by conversation id, murmur2),
coming from device ``dev1`` on gateway ``gw-test``. The test reads what the worker wrote:
the events partition, the SQLite timeline and the ``delivery.gw-test`` topic.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
import pytest
import redis.asyncio as redis

from chat.codec import Decoded
from chat.events import (
    ConversationCreateRequested, ConversationCreated, Delivery, DeliveryBatch, MessageAccepted,
    MessageDeduplicated, MessageRejected, MessageSendRequested, Origin, PartitionFenced, Target,
)
from chat.ids import new_group_id
from infra.topics import ensure_topics
from projections.connections import ConnectionRegistry
from projections.timelines_sqlite import SqliteTimelineStore
from tests.support import CommandProducer, PartitionReader, System

GATEWAY = "gw-test"
DEVICE = "dev1"
ORIGIN = Origin(gateway_id=GATEWAY, device_id=DEVICE)
FIRST_EVENT_TIMEOUT = 40.0  # the worker joins its group first


@pytest.fixture(scope="module")
def system(stack, tmp_path_factory):
    system = System(stack, tmp_path_factory.mktemp("pipeline"))
    ensure_topics(stack.bootstrap, {system.settings.delivery_topic(GATEWAY): 1})
    system.start_worker()
    yield system
    system.stop()


@pytest.fixture
def producer(system):
    producer = CommandProducer(system.settings)
    yield producer
    producer.flush()


def uid(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


def connect(system: System, entries: list[tuple[str, str]]) -> None:
    """Register devices as held by ``gw-test``, as that gateway would on connect."""

    async def register() -> None:
        client = redis.Redis.from_url(system.settings.redis_url)
        try:
            await ConnectionRegistry(client, ttl_s=60).register(entries, GATEWAY)
        finally:
            await client.aclose()

    asyncio.run(register())


def timeline(system: System, cid: str) -> list[Any]:
    async def read() -> list[Any]:
        store = SqliteTimelineStore(system.settings.resolved_sqlite_path, system.settings.retention_ms)
        await store.open()
        try:
            return (await store.page(cid, limit=200)).messages
        finally:
            await store.close()

    return asyncio.run(read())


def create(cid: str, creator: str, members: list[str]) -> ConversationCreateRequested:
    return ConversationCreateRequested(conversation_id=cid, kind="group", creator_id=creator,
                                       member_ids=members, origin=ORIGIN, name="pipeline")


def send(cid: str, sender: str, client_msg_id: str, body: str) -> MessageSendRequested:
    return MessageSendRequested(conversation_id=cid, sender_id=sender, client_msg_id=client_msg_id,
                                body=body, origin=ORIGIN)


def of_conversation(records: list[Decoded], cid: str) -> list[Any]:
    """The events of one conversation in log order (fences carry no conversation)."""
    return [r.event for r in records if getattr(r.event, "conversation_id", None) == cid]


def accepted(records: list[Decoded], cid: str) -> list[MessageAccepted]:
    return [e for e in of_conversation(records, cid) if isinstance(e, MessageAccepted)]


def frames(records: list[Decoded], cid: str, kind: str) -> list[tuple[Delivery, dict[str, Any]]]:
    """Deliveries of one frame type for one conversation, with the decoded frame."""
    out = []
    for delivery in deliveries_in(records):
        frame = orjson.loads(delivery.frame)
        about = frame.get("message", frame.get("conversation", frame))
        if frame["type"] == kind and about.get("conversation_id") == cid:
            out.append((delivery, frame))
    return out


def deliveries_in(records: list[Decoded]) -> list[Delivery]:
    """Every delivery on a gateway's topic, in order, out of its DeliveryBatch records."""
    out: list[Delivery] = []
    for record in records:
        assert isinstance(record.event, (Delivery, DeliveryBatch)), record.type
        out += record.event.deliveries if isinstance(record.event, DeliveryBatch) else [record.event]
    return out


def delivery_reader(system: System) -> PartitionReader:
    return PartitionReader(system.settings.kafka_bootstrap, system.settings.delivery_topic(GATEWAY), 0)


def events_reader(system: System, partition: int) -> PartitionReader:
    return PartitionReader(system.settings.kafka_bootstrap, system.settings.events_topic, partition)


async def opened_bodies(system: System, events: list[Any]) -> list[Any]:
    from projections.message_keys import make_message_key_store, open_batch

    keys = make_message_key_store(system.settings)
    await keys.open()
    try:
        return await open_batch(keys, events)
    finally:
        await keys.close()


def test_messages_reach_the_events_log_the_timeline_and_the_gateway(system, producer):
    alice, bob = uid("alice"), uid("bob")
    cid, n = new_group_id(), 12
    connect(system, [(alice, DEVICE), (bob, "devB")])
    producer.send(create(cid, alice, [bob]))
    for i in range(1, n + 1):
        producer.send(send(cid, alice, f"c{i}", f"hello {i}"))
    partition = producer.partition_of(cid)

    # (a) the events log: created, then seq 1..n, on the commands' partition number
    with events_reader(system, partition) as reader:
        records = reader.read_until(lambda rs: len(accepted(rs, cid)) >= n, FIRST_EVENT_TIMEOUT, f"{n} accepted")
    assert any(isinstance(r.event, PartitionFenced) and r.event.partition == partition for r in records)
    events = of_conversation(records, cid)
    assert [type(e) for e in events] == [ConversationCreated] + [MessageAccepted] * n
    assert {(m.user_id, m.role) for m in events[0].members} == {(alice, "admin"), (bob, "member")}
    # Bodies are sealed on the log (chat/sealing.py) and open with the message keys.
    assert all(e.body == "" and e.sealed is not None and b"hello" not in e.sealed.ciphertext for e in events[1:])
    opened = asyncio.run(opened_bodies(system, events[1:]))
    assert [(e.seq, e.client_msg_id, e.body, e.sender_id) for e in opened] == [
        (i, f"c{i}", f"hello {i}", alice) for i in range(1, n + 1)]
    assert all(e.origin == ORIGIN for e in events)
    assert len({e.message_id for e in events[1:]}) == n
    by_seq = {e.seq: e for e in events[1:]}

    # (c) the gateway's topic: acks to the sending device, messages to every member, in seq order
    with delivery_reader(system) as reader:
        records = reader.read_until(lambda rs: len(frames(rs, cid, "message")) >= n and
                                    len(frames(rs, cid, "ack")) >= n, 20, f"{n} acks and messages")
    acks, messages = frames(records, cid, "ack"), frames(records, cid, "message")
    assert [f["seq"] for _, f in acks] == list(range(1, n + 1))
    assert [f["client_msg_id"] for _, f in acks] == [f"c{i}" for i in range(1, n + 1)]
    assert all(f["message_id"] == by_seq[f["seq"]].message_id for _, f in acks)
    assert all(d.targets == [Target(alice, DEVICE)] and d.status == 202 for d, _ in acks)
    assert [f["message"]["seq"] for _, f in messages] == list(range(1, n + 1))
    assert [f["message"]["body"] for _, f in messages] == [f"hello {i}" for i in range(1, n + 1)]
    assert all(sorted(d.targets, key=lambda t: t.user_id) == sorted([Target(alice), Target(bob)],
                                                                      key=lambda t: t.user_id)
               for d, _ in messages)
    (created_reply,) = [(d, f) for d, f in frames(records, cid, "conversation") if d.status == 201]
    assert created_reply[0].targets == [Target(alice, DEVICE)]

    # (b) the timeline store; the projector writes it before it publishes the deliveries read above
    stored = timeline(system, cid)
    assert [(m.seq, m.client_msg_id, m.body, m.sender_id) for m in stored] == [
        (i, f"c{i}", f"hello {i}", alice) for i in range(1, n + 1)]
    assert [m.message_id for m in stored] == [by_seq[i].message_id for i in range(1, n + 1)]


def test_a_resent_command_is_deduplicated_and_takes_no_seq(system, producer):
    alice = uid("alice")
    cid = new_group_id()
    connect(system, [(alice, DEVICE)])
    producer.send(create(cid, alice, []))
    producer.send(send(cid, alice, "m1", "first"))
    producer.send(send(cid, alice, "m2", "second"))
    producer.send(send(cid, alice, "m1", "first"))  # an at-least-once retry of m1
    producer.send(send(cid, alice, "m3", "third"))
    partition = producer.partition_of(cid)

    with events_reader(system, partition) as reader:
        records = reader.read_until(lambda rs: any(e.client_msg_id == "m3" for e in accepted(rs, cid)),
                                    FIRST_EVENT_TIMEOUT, "m3 accepted")
    events = of_conversation(records, cid)
    assert [type(e) for e in events] == [ConversationCreated, MessageAccepted, MessageAccepted,
                                         MessageDeduplicated, MessageAccepted]
    first, dup, third = events[1], events[3], events[4]
    assert [(e.seq, e.client_msg_id) for e in accepted(records, cid)] == [(1, "m1"), (2, "m2"), (3, "m3")]
    assert (dup.seq, dup.message_id, dup.sent_at, dup.client_msg_id) == (
        first.seq, first.message_id, first.sent_at, "m1")
    assert third.seq == 3

    with delivery_reader(system) as reader:
        records = reader.read_until(lambda rs: len(frames(rs, cid, "ack")) >= 4, 20, "4 acks")
    acks = [f for _, f in frames(records, cid, "ack")]
    assert [(a["client_msg_id"], a["seq"]) for a in acks] == [("m1", 1), ("m2", 2), ("m1", 1), ("m3", 3)]
    assert acks[0]["message_id"] == acks[2]["message_id"] == first.message_id
    assert [f["message"]["seq"] for _, f in frames(records, cid, "message")] == [1, 2, 3]
    assert [(m.seq, m.client_msg_id) for m in timeline(system, cid)] == [(1, "m1"), (2, "m2"), (3, "m3")]


def test_a_non_member_is_rejected_as_not_found(system, producer):
    alice, mallory = uid("alice"), uid("mallory")
    cid = new_group_id()
    connect(system, [(alice, DEVICE), (mallory, DEVICE)])
    producer.send(create(cid, alice, []))
    producer.send(send(cid, mallory, "sneak", "let me in"))
    producer.send(send(cid, alice, "mine", "members only"))
    partition = producer.partition_of(cid)

    with events_reader(system, partition) as reader:
        records = reader.read_until(lambda rs: len(accepted(rs, cid)) >= 1, FIRST_EVENT_TIMEOUT, "alice's message")
    events = of_conversation(records, cid)
    assert [type(e) for e in events] == [ConversationCreated, MessageRejected, MessageAccepted]
    rejected = events[1]
    assert (rejected.code, rejected.sender_id, rejected.client_msg_id) == ("not_found", mallory, "sneak")
    assert (events[2].seq, events[2].sender_id) == (1, alice)  # the refused send used no seq

    with delivery_reader(system) as reader:
        records = reader.read_until(lambda rs: len(frames(rs, cid, "message")) >= 1, 20, "alice's message")
    errors = [(d, orjson.loads(d.frame)) for d in deliveries_in(records)
              if orjson.loads(d.frame).get("ref") == "sneak" and Target(mallory, DEVICE) in d.targets]
    assert [(d.status, f["type"], f["code"]) for d, f in errors] == [(404, "error", "not_found")]
    (message,) = frames(records, cid, "message")
    assert message[0].targets == [Target(alice)]  # mallory is connected but not a member
    assert [m.client_msg_id for m in timeline(system, cid)] == ["mine"]
