"""Python types for the events and commands defined in ``schemas/``.

The ``.avsc`` files are the definition; these dataclasses mirror them and a
round-trip test checks every one against its schema. ``TYPE`` is the Avro
record name, ``VERSION`` the newest schema version this code reads and writes.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from functools import cache
from typing import Any, ClassVar, Union


@dataclass(frozen=True, slots=True)
class Origin:
    gateway_id: str
    device_id: str | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class Media:
    media_id: str
    url: str
    content_type: str
    size: int


@dataclass(frozen=True, slots=True)
class Member:
    user_id: str
    role: str  # "admin" | "member"


@dataclass(frozen=True, slots=True)
class ReplyRef:
    seq: int
    sender_id: str


@dataclass(frozen=True, slots=True)
class Sealed:
    """A body under its message's key (chat/sealing.py)."""

    nonce: bytes
    ciphertext: bytes


@dataclass(frozen=True, slots=True)
class Target:
    user_id: str
    device_id: str | None = None


class Event:
    """Base of every record type carried in an Envelope."""

    TYPE: ClassVar[str]
    VERSION: ClassVar[int] = 1

    def to_record(self) -> dict[str, Any]:
        return _record(self)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "Event":
        return _build(cls, record)


@dataclass(frozen=True, slots=True)
class MessageSendRequested(Event):
    TYPE: ClassVar[str] = "MessageSendRequested"
    # v2: media, the metadata of media_id as the gateway found it; v3: reply_to and mentions
    VERSION: ClassVar[int] = 3
    conversation_id: str
    sender_id: str
    client_msg_id: str
    body: str
    origin: Origin
    media_id: str | None = None
    media: Media | None = None
    reply_to: int | None = None
    mentions: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ConversationCreateRequested(Event):
    TYPE: ClassVar[str] = "ConversationCreateRequested"
    conversation_id: str
    kind: str  # "direct" | "group"
    creator_id: str
    member_ids: list[str]
    origin: Origin
    name: str = ""
    description: str = ""


@dataclass(frozen=True, slots=True)
class ConversationUpdateRequested(Event):
    TYPE: ClassVar[str] = "ConversationUpdateRequested"
    conversation_id: str
    user_id: str
    origin: Origin
    name: str | None = None
    description: str | None = None


@dataclass(frozen=True, slots=True)
class MembersAddRequested(Event):
    TYPE: ClassVar[str] = "MembersAddRequested"
    conversation_id: str
    user_id: str
    member_ids: list[str]
    origin: Origin


@dataclass(frozen=True, slots=True)
class MemberRemoveRequested(Event):
    TYPE: ClassVar[str] = "MemberRemoveRequested"
    conversation_id: str
    user_id: str
    member_id: str
    origin: Origin


@dataclass(frozen=True, slots=True)
class ReceiptRecordRequested(Event):
    TYPE: ClassVar[str] = "ReceiptRecordRequested"
    conversation_id: str
    user_id: str
    seq: int
    status: str  # "delivered" | "read"
    origin: Origin


@dataclass(frozen=True, slots=True)
class ConversationCreated(Event):
    TYPE: ClassVar[str] = "ConversationCreated"
    conversation_id: str
    kind: str
    name: str
    description: str
    members: list[Member]
    created_by: str
    created_at: int
    origin: Origin


@dataclass(frozen=True, slots=True)
class ConversationUpdated(Event):
    TYPE: ClassVar[str] = "ConversationUpdated"
    conversation_id: str
    updated_by: str
    updated_at: int
    origin: Origin
    name: str | None = None
    description: str | None = None


@dataclass(frozen=True, slots=True)
class MembersAdded(Event):
    TYPE: ClassVar[str] = "MembersAdded"
    conversation_id: str
    added_by: str
    members: list[Member]
    at_seq: int
    added_at: int
    origin: Origin


@dataclass(frozen=True, slots=True)
class MemberRemoved(Event):
    TYPE: ClassVar[str] = "MemberRemoved"
    conversation_id: str
    removed_by: str
    member_id: str
    at_seq: int
    removed_at: int
    origin: Origin
    promoted: str | None = None


@dataclass(frozen=True, slots=True)
class ReceiptRecorded(Event):
    TYPE: ClassVar[str] = "ReceiptRecorded"
    conversation_id: str
    user_id: str
    seq: int
    status: str
    recorded_at: int


@dataclass(frozen=True, slots=True)
class MessageAccepted(Event):
    TYPE: ClassVar[str] = "MessageAccepted"
    VERSION: ClassVar[int] = 3  # v2: reply_to and mentions; v3: sealed
    conversation_id: str
    seq: int
    message_id: str
    sender_id: str
    client_msg_id: str
    body: str  # "" on the log when sealed; the clear body once the projector has opened it
    sent_at: int
    origin: Origin
    media: Media | None = None
    reply_to: ReplyRef | None = None
    mentions: list[str] = field(default_factory=list)
    sealed: Sealed | None = None


@dataclass(frozen=True, slots=True)
class MessageDeduplicated(Event):
    TYPE: ClassVar[str] = "MessageDeduplicated"
    conversation_id: str
    seq: int
    message_id: str
    sender_id: str
    client_msg_id: str
    sent_at: int
    origin: Origin


@dataclass(frozen=True, slots=True)
class MessageRejected(Event):
    TYPE: ClassVar[str] = "MessageRejected"
    conversation_id: str
    sender_id: str
    client_msg_id: str
    code: str
    message: str
    origin: Origin


@dataclass(frozen=True, slots=True)
class CommandRejected(Event):
    TYPE: ClassVar[str] = "CommandRejected"
    conversation_id: str
    command: str
    user_id: str
    code: str
    message: str
    origin: Origin
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class PartitionFenced(Event):
    TYPE: ClassVar[str] = "PartitionFenced"
    partition: int
    worker_id: str
    nonce: str
    fenced_at: int


@dataclass(frozen=True, slots=True)
class PipelineProbe(Event):
    TYPE: ClassVar[str] = "PipelineProbe"
    gateway_id: str
    probe_id: str
    partition: int
    sent_at: int


@dataclass(frozen=True, slots=True)
class Delivery(Event):
    TYPE: ClassVar[str] = "Delivery"
    targets: list[Target]
    frame: bytes
    request_id: str | None = None
    status: int = 200


@dataclass(frozen=True, slots=True)
class DeviceTarget:
    user_id: str
    device_id: str


@dataclass(frozen=True, slots=True)
class BatchedDelivery:
    """A ``Delivery`` inside a ``DeliveryBatch``: its targets split into whole users and single devices."""
    users: list[str]
    devices: list[DeviceTarget]
    frame: bytes
    request_id: str | None = None
    status: int = 200

    @classmethod
    def of(cls, delivery: Delivery) -> "BatchedDelivery":
        return cls([t.user_id for t in delivery.targets if t.device_id is None],
                   [DeviceTarget(t.user_id, t.device_id) for t in delivery.targets if t.device_id is not None],
                   delivery.frame, delivery.request_id, delivery.status)

    @property
    def targets(self) -> list[Target]:
        return [Target(u) for u in self.users] + [Target(d.user_id, d.device_id) for d in self.devices]


@dataclass(frozen=True, slots=True)
class DeliveryBatch(Event):
    """A projected batch's deliveries for one gateway, in order (schemas/DeliveryBatch.v1.avsc)."""
    TYPE: ClassVar[str] = "DeliveryBatch"
    deliveries: list[BatchedDelivery]


@dataclass(frozen=True, slots=True)
class PresenceSignal(Event):
    TYPE: ClassVar[str] = "PresenceSignal"
    user_id: str
    gateway_id: str
    kind: str  # "connected" | "disconnected" | "heartbeat"
    devices: list[str]
    at: int
    device_id: str | None = None


@dataclass(frozen=True, slots=True)
class PresenceChanged(Event):
    TYPE: ClassVar[str] = "PresenceChanged"
    user_id: str
    status: str  # "online" | "offline"
    last_seen: int
    changed_at: int


@dataclass(frozen=True, slots=True)
class MediaUploaded(Event):
    TYPE: ClassVar[str] = "MediaUploaded"
    media_id: str
    uploader_id: str
    content_type: str
    size: int
    sha256: str
    uploaded_at: int


@dataclass(frozen=True, slots=True)
class PushRequested(Event):
    TYPE: ClassVar[str] = "PushRequested"
    VERSION: ClassVar[int] = 2  # v2: preview
    conversation_id: str
    seq: int
    message_id: str
    sender_id: str
    user_id: str
    device_id: str
    platform: str  # "fcm" | "apns" | "webpush" | "webhook"
    push_token: str
    collapse_key: str
    title: str
    body: str | None
    sent_at: int
    attempt: int = 0
    preview: bool = False  # the sender fills body from the timeline at send time


@dataclass(frozen=True, slots=True)
class PushFailed(Event):
    TYPE: ClassVar[str] = "PushFailed"
    conversation_id: str
    seq: int
    message_id: str
    sender_id: str
    user_id: str
    device_id: str
    platform: str
    push_token: str
    collapse_key: str
    title: str
    body: str | None
    sent_at: int
    attempts: int
    error: str
    failed_at: int


# Protocol 1.1: changes to existing messages. Each accepted change takes the conversation's next
# change_seq; change_id is the client's id of the change (its idempotence key).


@dataclass(frozen=True, slots=True)
class MessageEditRequested(Event):
    TYPE: ClassVar[str] = "MessageEditRequested"
    conversation_id: str
    user_id: str
    change_id: str
    seq: int
    body: str
    origin: Origin


@dataclass(frozen=True, slots=True)
class MessageDeleteRequested(Event):
    TYPE: ClassVar[str] = "MessageDeleteRequested"
    conversation_id: str
    user_id: str
    change_id: str
    seq: int
    origin: Origin


@dataclass(frozen=True, slots=True)
class ReactionRequested(Event):
    TYPE: ClassVar[str] = "ReactionRequested"
    conversation_id: str
    user_id: str
    change_id: str
    seq: int
    emoji: str
    on: bool
    origin: Origin


@dataclass(frozen=True, slots=True)
class MessageEdited(Event):
    TYPE: ClassVar[str] = "MessageEdited"
    VERSION: ClassVar[int] = 2  # v2: sealed
    conversation_id: str
    seq: int
    change_seq: int
    change_id: str
    user_id: str
    body: str  # as MessageAccepted.body
    edited_at: int
    origin: Origin
    sealed: Sealed | None = None


@dataclass(frozen=True, slots=True)
class MessageDeleted(Event):
    TYPE: ClassVar[str] = "MessageDeleted"
    VERSION: ClassVar[int] = 2  # v2: mentions
    conversation_id: str
    seq: int
    change_seq: int
    change_id: str
    user_id: str
    deleted_at: int
    origin: Origin
    media_id: str | None = None
    mentions: list[str] = field(default_factory=list)  # who the deleted message mentioned


@dataclass(frozen=True, slots=True)
class ReactionChanged(Event):
    TYPE: ClassVar[str] = "ReactionChanged"
    conversation_id: str
    seq: int
    change_seq: int
    change_id: str
    user_id: str
    emoji: str
    on: bool
    changed_at: int
    origin: Origin


@dataclass(frozen=True, slots=True)
class ChangeAcknowledged(Event):
    TYPE: ClassVar[str] = "ChangeAcknowledged"
    conversation_id: str
    seq: int
    change_seq: int | None
    change_id: str
    user_id: str
    command: str
    answered_at: int
    origin: Origin


MessageChange = Union[MessageEdited, MessageDeleted, ReactionChanged]
# The protocol's name of each change ("change" in message_updated and in the change log).
CHANGE_NAMES: dict[type[Event], str] = {MessageEdited: "edit", MessageDeleted: "delete", ReactionChanged: "reaction"}


def change_time(event: MessageChange) -> int:
    """When a change was made (each change event names its time after what it did)."""
    if isinstance(event, MessageEdited):
        return event.edited_at
    return event.deleted_at if isinstance(event, MessageDeleted) else event.changed_at


# Profiles, blocking and mute (protocol 1.1).

@dataclass(frozen=True, slots=True)
class BlockRequested(Event):
    TYPE: ClassVar[str] = "BlockRequested"
    conversation_id: str  # direct_conversation_id(user_id, blocked_id)
    user_id: str
    blocked_id: str
    blocked: bool
    origin: Origin


@dataclass(frozen=True, slots=True)
class BlockChanged(Event):
    TYPE: ClassVar[str] = "BlockChanged"
    conversation_id: str
    user_id: str
    blocked_id: str
    blocked: bool
    changed_at: int
    origin: Origin


@dataclass(frozen=True, slots=True)
class MuteRequested(Event):
    TYPE: ClassVar[str] = "MuteRequested"
    conversation_id: str
    user_id: str
    muted_until: int | None  # ms, -1 until unmuted, None not muted
    origin: Origin


@dataclass(frozen=True, slots=True)
class MuteChanged(Event):
    TYPE: ClassVar[str] = "MuteChanged"
    conversation_id: str
    user_id: str
    muted_until: int | None
    changed_at: int
    origin: Origin


@dataclass(frozen=True, slots=True)
class ProfileUpdated(Event):
    TYPE: ClassVar[str] = "ProfileUpdated"
    user_id: str
    updated_at: int
    origin: Origin
    display_name: str | None = None  # None: unchanged
    avatar_set: bool = False  # whether avatar_media_id applies (None then removes the avatar)
    avatar_media_id: str | None = None


# Snapshots of the sequencer's state (streams/snapshots.py), on the snapshots topic. Nested
# records are plain dicts: only streams/snapshot_state.py builds and reads them.

@dataclass(frozen=True, slots=True)
class ConversationSnapshot(Event):
    TYPE: ClassVar[str] = "ConversationSnapshot"
    conversation_id: str
    upto: int
    kind: str
    name: str
    description: str
    created_by: str
    created_at: int
    last_seq: int
    last_change_seq: int
    members: list[Member]
    marks: list[dict[str, Any]]
    messages: list[dict[str, Any]]
    recent: list[dict[str, Any]]
    recent_changes: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class BlocksSnapshot(Event):
    TYPE: ClassVar[str] = "BlocksSnapshot"
    conversation_id: str
    upto: int
    blockers: list[str]
    blocked: list[str]


@dataclass(frozen=True, slots=True)
class SnapshotCheckpoint(Event):
    TYPE: ClassVar[str] = "SnapshotCheckpoint"
    partition: int
    upto: int
    worker_id: str
    fence: int
    written_at: int
    conversations: int


Command = Union[MessageSendRequested, ConversationCreateRequested, ConversationUpdateRequested,
                MembersAddRequested, MemberRemoveRequested, ReceiptRecordRequested, MessageEditRequested,
                MessageDeleteRequested, ReactionRequested, BlockRequested, MuteRequested]

EVENT_TYPES: dict[str, type[Event]] = {
    cls.TYPE: cls
    for cls in (
        MessageSendRequested,
        ConversationCreateRequested,
        ConversationUpdateRequested,
        MembersAddRequested,
        MemberRemoveRequested,
        ReceiptRecordRequested,
        ConversationCreated,
        ConversationUpdated,
        MembersAdded,
        MemberRemoved,
        ReceiptRecorded,
        MessageAccepted,
        MessageDeduplicated,
        MessageRejected,
        CommandRejected,
        PartitionFenced,
        PipelineProbe,
        Delivery,
        DeliveryBatch,
        PresenceSignal,
        PresenceChanged,
        MediaUploaded,
        PushRequested,
        PushFailed,
        MessageEditRequested,
        MessageDeleteRequested,
        ReactionRequested,
        MessageEdited,
        MessageDeleted,
        ReactionChanged,
        ChangeAcknowledged,
        BlockRequested,
        BlockChanged,
        MuteRequested,
        MuteChanged,
        ProfileUpdated,
        ConversationSnapshot,
        BlocksSnapshot,
        SnapshotCheckpoint,
    )
}

_NESTED = (Origin, Media, Member, Target, ReplyRef, Sealed, BatchedDelivery, DeviceTarget)


_Plan = tuple[tuple[str, type | None, bool], ...]


@cache
def _plan(cls: type) -> _Plan:
    """Per field: its name, the nested record type in it (X, X | None or list[X]) or None, and
    whether it is a list. Worked out once per class: records are built and read per message,
    and ``dataclasses.asdict`` or type hints looked up per record were a tenth of the worker's CPU."""
    hints = typing.get_type_hints(cls)
    plan = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        is_list = typing.get_origin(hint) is list
        if is_list:
            (hint,) = typing.get_args(hint)
        # Optional[X] is a union with None.
        candidates = typing.get_args(hint) if typing.get_origin(hint) in (Union, types.UnionType) else (hint,)
        nested = next((c for c in candidates if c in _NESTED), None)
        plan.append((f.name, nested, is_list))
    return tuple(plan)


def event_key(event: Event) -> str:
    """The record key: the conversation id, or the user id for presence records."""
    return getattr(event, "conversation_id", None) or getattr(event, "user_id", "")


def _record(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, nested, is_list in _plan(type(obj)):
        value = getattr(obj, name)
        if value is not None:
            if nested is not None:
                value = [_record(v) for v in value] if is_list else _record(value)
            elif is_list:
                value = list(value)
        out[name] = value
    return out


def _build(cls: type, record: dict[str, Any]) -> Any:
    kwargs: dict[str, Any] = {}
    for name, nested, is_list in _plan(cls):
        if name in record:
            value = record[name]
            if value is not None and nested is not None:
                value = [_build(nested, v) for v in value] if is_list else _build(nested, value)
            kwargs[name] = value
    return cls(**kwargs)
