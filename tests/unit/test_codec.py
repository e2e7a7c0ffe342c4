"""Every event type round-trips through its Avro schema, and the types match the schemas."""

from __future__ import annotations

import dataclasses
import io
import json

import fastavro
import pytest

from chat.codec import ENVELOPE_LAYOUT, SCHEMA_DIR, Codec, default_codec, new_event_id, read_envelope, write_envelope
from chat.errors import SchemaError
from chat.events import (
    EVENT_TYPES, ConversationUpdateRequested, ConversationUpdated, MemberRemoveRequested, MemberRemoved,
    MembersAddRequested, MembersAdded, ReceiptRecordRequested, ReceiptRecorded, CommandRejected, ConversationCreateRequested, ConversationCreated, Delivery, Media,
    MediaUploaded, Member, MessageAccepted, PushFailed, PushRequested, MessageDeduplicated, MessageRejected, MessageSendRequested, Origin, PartitionFenced, PipelineProbe,
    PresenceChanged, PresenceSignal, Target, ReplyRef, MessageEditRequested, MessageDeleteRequested,
    ReactionRequested, MessageEdited, MessageDeleted, ReactionChanged, ChangeAcknowledged,
)
from chat.events import BlockChanged, BlockRequested, MuteChanged, MuteRequested, ProfileUpdated
from chat.events import BatchedDelivery, BlocksSnapshot, ConversationSnapshot, DeliveryBatch, DeviceTarget, SnapshotCheckpoint

O = Origin("gw", "dev", "req")
SAMPLES = [
    MessageSendRequested("c", "alice", "cm1", "héllo 👋", O, None),
    MessageSendRequested("c", "alice", "cm2", "", O, "md", Media("md", "/v1/media/md", "video/mp4", 2**33)),
    ConversationCreateRequested("c", "group", "alice", ["bob", "carol"], Origin("gw"), "n", "d"),
    ConversationCreated("c", "direct", "", "", [Member("a", "member"), Member("b", "member")], "a", 7, O),
    MessageAccepted("c", 1, "m", "a", "cm", "b", 9, O, Media("md", "/v1/media/md", "image/png", 10)),
    MessageAccepted("c", 2**40, "m", "a", "cm", "", 9, O, None),
    MessageDeduplicated("c", 3, "m", "a", "cm", 9, O),
    MessageRejected("c", "a", "cm", "not_found", "no such conversation", O),
    CommandRejected("c", "ConversationCreateRequested", "a", "conflict", "conversation exists", O),
    PartitionFenced(3, "w1", "nonce", 12),
    PipelineProbe("gw-1", "r-1", 2, 1_700_000_000_000),
    ConversationUpdateRequested("c", "alice", O, "new name", None),
    MembersAddRequested("c", "alice", ["bob", "carol"], O),
    MemberRemoveRequested("c", "alice", "bob", O),
    ConversationUpdated("c", "alice", 10, O, None, "about"),
    MembersAdded("c", "alice", [Member("bob", "member")], 4, 11, O),
    MemberRemoved("c", "alice", "alice", 4, 12, O, "bob"),
    ReceiptRecordRequested("c", "bob", 7, "read", O),
    ReceiptRecorded("c", "bob", 7, "delivered", 13),
    Delivery([Target("a"), Target("b", "d1")], b'{"type":"ack"}', "r", 201),
    DeliveryBatch([BatchedDelivery(["a", "b"], [DeviceTarget("c", "phone")], b'{"type":"message"}'),
                   BatchedDelivery([], [], b"{}", "r", 503)]),
    DeliveryBatch([]),
    PresenceSignal("alice", "gw", "connected", ["phone", "laptop"], 14, "laptop"),
    PresenceSignal("alice", "gw", "heartbeat", [], 15, None),
    PresenceChanged("alice", "offline", 15, 16),
    MediaUploaded("md", "alice", "image/png", 10, "ab" * 32, 17),
    PushRequested("c", 1, "m", "alice", "bob", "phone", "fcm", "tok", "c", "alice", None, 9, 2),
    PushFailed("c", 1, "m", "alice", "bob", "phone", "webhook", "http://x", "c", "alice", "hi", 9, 5, "HTTP 500", 18),
    MessageSendRequested("c", "alice", "cm3", "re", O, None, None, 7, ["bob", "carol"]),
    MessageAccepted("c", 8, "m", "a", "cm", "re", 9, O, None, ReplyRef(7, "bob"), ["bob"]),
    MessageEditRequested("c", "alice", "ch1", 3, "fixed", O),
    MessageDeleteRequested("c", "alice", "ch2", 3, O),
    ReactionRequested("c", "alice", "ch3", 3, "👍🏽", True, O),
    MessageEdited("c", 3, 1, "ch1", "alice", "fixed", 20, O),
    MessageDeleted("c", 3, 2, "ch2", "alice", 21, O, "md"),
    ReactionChanged("c", 3, 3, "ch3", "alice", "👍🏽", False, 22, O),
    ChangeAcknowledged("c", 3, None, "ch3", "alice", "ReactionRequested", 23, O),
    ChangeAcknowledged("c", 3, 2, "ch2", "alice", "MessageDeleteRequested", 24, O),
    BlockRequested("dm_x", "alice", "bob", True, O),
    BlockChanged("dm_x", "alice", "bob", False, 19, O),
    MuteRequested("c", "alice", -1, O),
    MuteRequested("c", "alice", None, O),
    MuteChanged("c", "alice", 2**41, 20, O),
    ProfileUpdated("alice", 21, O, "Alice 👋", True, "ab" * 16),
    ProfileUpdated("alice", 22, Origin("gw"), None, False, None),
    ConversationSnapshot(
        "c", 2**40, "group", "n", "d", "a", 7, 9, 2, [Member("a", "admin"), Member("b", "member")],
        [{"user_id": "a", "delivered": 9, "read": 8}],
        [{"seq": 9, "sender_id": "a", "sent_at": 5, "digest": b"\x01" * 8, "media_id": "md", "deleted": False,
          "reactions": [{"emoji": "👍🏽", "user_ids": ["b", "a"]}], "mentions": ["b"]},
         {"seq": 10, "sender_id": "b", "sent_at": 6, "digest": b"", "media_id": None, "deleted": True,
          "reactions": None, "mentions": []}],
        [{"sender_id": "a", "client_msg_id": "cm", "seq": 9, "message_id": "m", "sent_at": 5}],
        [{"user_id": "b", "change_id": "ch", "seq": 9, "change_seq": None, "at": 7}]),
    BlocksSnapshot("dm_x", 12, ["alice"], ["bob"]),
    SnapshotCheckpoint(3, 12, "w1", 4, 1_700_000_000_000, 2),
]


def test_every_event_type_has_a_sample():
    assert {type(s) for s in SAMPLES} == set(EVENT_TYPES.values())


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: e.TYPE)
def test_round_trip(event):
    codec = default_codec()
    data = codec.encode(event, key="k1", event_id="e1", occurred_at=123)
    decoded = codec.decode(data)
    assert decoded.event == event
    assert (decoded.event_id, decoded.type, decoded.schema_version, decoded.occurred_at, decoded.key) == (
        "e1", event.TYPE, event.VERSION, 123, "k1")


def test_message_send_requested_v1_records_read_as_v2_with_no_media():
    """Commands written by a gateway of the previous version still decode (Avro resolution)."""
    codec = default_codec()
    v1 = codec.schemas[("MessageSendRequested", 1)]
    payload = io.BytesIO()
    fastavro.schemaless_writer(payload, v1, {"conversation_id": "c", "sender_id": "a", "client_msg_id": "m",
                                             "body": "hi", "media_id": None,
                                             "origin": {"gateway_id": "gw", "device_id": None, "request_id": None}})
    env = io.BytesIO()
    fastavro.schemaless_writer(env, codec.envelope, {"event_id": "e", "type": "MessageSendRequested",
                                                      "schema_version": 1, "occurred_at": 0, "key": "c",
                                                      "payload": payload.getvalue()})
    decoded = codec.decode(env.getvalue())
    assert decoded.schema_version == 1
    assert decoded.event == MessageSendRequested("c", "a", "m", "hi", Origin("gw"), None, None)


@pytest.mark.parametrize("cls", list(EVENT_TYPES.values()), ids=lambda c: c.TYPE)
def test_dataclass_fields_match_schema(cls):
    schema = json.loads((SCHEMA_DIR / f"{cls.TYPE}.v{cls.VERSION}.avsc").read_text())
    assert [f["name"] for f in schema["fields"]] != []
    assert {f["name"] for f in schema["fields"]} == {f.name for f in dataclasses.fields(cls)}


def test_garbage_and_unknown_types_raise_schema_error():
    codec = default_codec()
    with pytest.raises(SchemaError):
        codec.decode(b"\xff\xfe not avro")
    env = io.BytesIO()
    fastavro.schemaless_writer(env, codec.envelope, {"event_id": "e", "type": "Nope", "schema_version": 1,
                                                      "occurred_at": 0, "key": "", "payload": b""})
    with pytest.raises(SchemaError):
        codec.decode(env.getvalue())


def test_encoding_a_bad_value_raises_schema_error():
    bad = MessageAccepted("c", "not-an-int", "m", "a", "cm", "b", 9, O)  # type: ignore[arg-type]
    with pytest.raises(SchemaError):
        default_codec().encode(bad)


def test_old_writer_version_resolves_to_new_reader(tmp_path):
    """A v2 schema that adds a defaulted field still reads v1 records (Avro resolution)."""
    import shutil
    shutil.copytree(SCHEMA_DIR, tmp_path / "schemas")
    v1 = json.loads((tmp_path / "schemas" / "PartitionFenced.v1.avsc").read_text())
    v2 = dict(v1, fields=v1["fields"] + [{"name": "reason", "type": "string", "default": "start"}])
    (tmp_path / "schemas" / "PartitionFenced.v2.avsc").write_text(json.dumps(v2))
    codec = Codec(tmp_path / "schemas")
    data = codec.encode(PartitionFenced(1, "w", "n", 2))  # written as v1 (the code's VERSION)
    payload = codec._read_payload("PartitionFenced", 1, _payload(codec, data))
    assert payload == {"partition": 1, "worker_id": "w", "nonce": "n", "fenced_at": 2}
    reader = codec.schemas[("PartitionFenced", 2)]
    resolved = fastavro.schemaless_reader(io.BytesIO(_payload(codec, data)), codec.schemas[("PartitionFenced", 1)], reader)
    assert resolved["reason"] == "start"


def _payload(codec, data):
    return fastavro.schemaless_reader(io.BytesIO(data), codec.envelope)["payload"]


ENVELOPES = [
    ("", "", 0, 0, "", b""),
    ("e" * 32, "MessageAccepted", 2, 1_764_000_000_000, "conv-é", b"\x00\xff" * 100),
    ("x", "T", -1, -(2**63), "k" * 300, b"p" * 70_000),
    ("x", "T", 2**31 - 1, 2**63 - 1, "👋", b"\x80"),
]


@pytest.mark.parametrize("fields", ENVELOPES)
def test_the_hand_written_envelope_is_fastavros(fields):
    """write_envelope/read_envelope give and take exactly the bytes of envelope.avsc."""
    names = [name for name, _ in ENVELOPE_LAYOUT]
    expected = io.BytesIO()
    fastavro.schemaless_writer(expected, default_codec().envelope, dict(zip(names, fields)))
    assert write_envelope(*fields) == expected.getvalue()
    assert read_envelope(expected.getvalue()) == fields


@pytest.mark.parametrize("data", [b"", b"\x02", b"\x02e\x7f", b"\xff" * 12, b"\x01", b"\x04\xff\xfe\x00\x00\x00\x00\x00"])
def test_a_truncated_or_bad_envelope_raises_schema_error(data):
    with pytest.raises(SchemaError):
        read_envelope(data)


def test_event_ids_are_unique_32_hex_digits():
    ids = {new_event_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_message_accepted_v1_records_read_as_v2_with_no_reply_or_mentions():
    """Events written before protocol 1.1 replay unchanged: no reply_to, no mentions."""
    codec = default_codec()
    v1 = codec.schemas[("MessageAccepted", 1)]
    payload = io.BytesIO()
    fastavro.schemaless_writer(payload, v1, {"conversation_id": "c", "seq": 4, "message_id": "m", "sender_id": "a",
                                             "client_msg_id": "cm", "body": "hi", "media": None, "sent_at": 9,
                                             "origin": {"gateway_id": "gw", "device_id": None, "request_id": None}})
    data = write_envelope("e", "MessageAccepted", 1, 0, "c", payload.getvalue())
    decoded = codec.decode(data)
    assert decoded.event == MessageAccepted("c", 4, "m", "a", "cm", "hi", 9, Origin("gw"), None, None, [])
