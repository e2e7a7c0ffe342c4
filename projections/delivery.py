"""Delivery projection: who gets each event, on which gateway, as which frame.

Recipients are computed here, before the gateway (Zulip's ``{event, users}``): each
gateway receives one ``Delivery`` per frame on its own topic, naming the users whose
devices it holds, and only writes the bytes to those sockets. ``plan`` is pure;
``DeliveryRouter`` adds the Redis lookups, one pipeline per batch.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Awaitable, Callable, Iterable, Sequence

from chat import frames
from chat.errors import ERRORS_BY_CODE
from chat.events import (
    ChangeAcknowledged, CommandRejected, ConversationCreated, ConversationUpdated, Delivery, Event, MemberRemoved,
    MembersAdded, MessageAccepted, MessageDeduplicated, MessageDeleted, MessageEdited, MessageRejected, Origin,
    BatchedDelivery, DeliveryBatch, DeviceTarget, PresenceChanged, ReactionChanged, ReceiptRecorded, Target,
)
from chat.ids import is_direct_id
from projections.connections import ConnectionRegistry
from projections.conversations import ConversationProjection
from projections.timeline_projection import TimelineOutcome

# (gateway id, delivery): a ``Delivery``, or a ``BatchedDelivery`` naming whole users (``fan_out``:
# a big group's fan-out built a ``Target`` per member only for ``batched`` to take it apart again).
Routed = tuple[str, Delivery | BatchedDelivery]

# A DeliveryBatch record stays under this many bytes of frames and recipients (Kafka refuses
# records over 1 MiB by default): a delivery with more recipients than fit is split across
# records; only a frame bigger than the bound goes alone (with at most RECIPIENT_BYTES of its
# recipients per record).
BATCH_BYTES = 256 * 1024
RECIPIENT_BYTES = 64 * 1024
_ENTRY = 3  # Avro's overhead per recipient string: its varint length, with room to spare


def delivery_bytes(d: BatchedDelivery) -> int:
    """What ``d`` adds to a record, give or take a few bytes of Avro's framing (ids are
    ASCII: chat.identity)."""
    return (len(d.frame) + len(d.request_id or "") + sum(map(len, d.users)) + _ENTRY * len(d.users)
            + sum(len(t.user_id) + len(t.device_id) + 2 * _ENTRY for t in d.devices))


def _pieces(d: BatchedDelivery, max_bytes: int) -> list[tuple[BatchedDelivery, int]]:
    """``d`` whole if it fits in a record, else cut into pieces by recipients (whole users,
    then single devices, in their order), each with the frame; the answer to a waiting
    request (``request_id``) rides on the first piece only."""
    size = delivery_bytes(d)
    if size <= max_bytes:
        return [(d, size)]
    base = len(d.frame) + len(d.request_id or "")
    budget = max(max_bytes - base, RECIPIENT_BYTES)
    recipients = [(u, len(u) + _ENTRY) for u in d.users] + [
        (t, len(t.user_id) + len(t.device_id) + 2 * _ENTRY) for t in d.devices]
    pieces: list[tuple[BatchedDelivery, int]] = []
    users: list[str] = []
    devices: list[DeviceTarget] = []
    used = 0
    for recipient, cost in recipients:
        if used and used + cost > budget:
            pieces.append((BatchedDelivery(users, devices, d.frame), base + used))
            users, devices, used = [], [], 0
        (users if isinstance(recipient, str) else devices).append(recipient)  # type: ignore[arg-type]
        used += cost
    pieces.append((BatchedDelivery(users, devices, d.frame), base + used))
    first = pieces[0][0]
    pieces[0] = (BatchedDelivery(first.users, first.devices, d.frame, d.request_id, d.status), pieces[0][1])
    return pieces


def batched(routed: Sequence[Routed], max_bytes: int = BATCH_BYTES) -> list[tuple[str, DeliveryBatch]]:
    """One record per gateway (more only past ``max_bytes`` of frames and recipients), each
    gateway's deliveries in the order given: a gateway reads its one partition in order, so
    the frames reach its sockets in the order the projector routed them. A delivery too big
    for one record is split by recipients into consecutive pieces (``_pieces``), so every
    device still gets each frame once and in order."""
    out: list[tuple[str, DeliveryBatch]] = []
    open_: dict[str, tuple[list[BatchedDelivery], list[int]]] = {}
    for gateway, delivery in routed:
        whole = delivery if isinstance(delivery, BatchedDelivery) else BatchedDelivery.of(delivery)
        for piece, size in _pieces(whole, max_bytes):
            current = open_.get(gateway)
            if current is None or (current[0] and current[1][0] + size > max_bytes):
                current = open_[gateway] = ([], [0])
                out.append((gateway, DeliveryBatch(current[0])))
            current[0].append(piece)
            current[1][0] += size
    return out


def _reply(origin: Origin, user_id: str, frame: bytes, status: int) -> list[Routed]:
    """The answer to the device or HTTP request a command came from."""
    if origin.device_id is None and origin.request_id is None:
        return []
    targets = [Target(user_id, origin.device_id)] if origin.device_id is not None else []
    return [(origin.gateway_id, Delivery(targets, frame, origin.request_id, status))]


def fan_out(frame: bytes, user_ids: Iterable[str], connections: dict[str, dict[str, str]]) -> list[Routed]:
    """``frame`` to every device of ``user_ids``: one delivery per gateway holding any, naming
    each user once, in the order given."""
    by_gateway: dict[str, list[str]] = defaultdict(list)
    for user_id in user_ids:
        devices = connections.get(user_id)
        if not devices:
            continue
        if len(devices) == 1:  # (most users: one device, one gateway)
            for gateway in devices.values():
                by_gateway[gateway].append(user_id)
        else:
            for gateway in sorted(set(devices.values())):
                by_gateway[gateway].append(user_id)
    return [(gateway, BatchedDelivery(users, [], frame)) for gateway, users in sorted(by_gateway.items())]


_CHANGES = (MessageEdited, MessageDeleted, ReactionChanged)


def plan(event: Event, members: Sequence[str], connections: dict[str, dict[str, str]],
         conversation: dict[str, Any] | None = None, timeline: TimelineOutcome | None = None) -> list[Routed]:
    """The deliveries for one event.

    ``members``: who receives it (the conversation's members after the event, plus a removed
    member); ``connections``: user -> {device: gateway}; ``conversation``: the conversation as
    the projection holds it now (membership events, and a refused create or add that collided);
    ``timeline``: what projecting the batch into the timeline found (replies' previews, the
    messages as each change left them).
    """
    timeline = timeline or TimelineOutcome()
    if isinstance(event, MessageAccepted):
        message = timeline.replies.get((event.conversation_id, event.seq))
        return (_reply(event.origin, event.sender_id, frames.ack_frame(event), 202)
                + fan_out(frames.message_frame(event, message), members, connections))
    if isinstance(event, _CHANGES):
        message = timeline.changed.get((event.conversation_id, event.change_seq))
        if message is None:  # the message expired: the change is durable, there is nothing to show
            return _reply(event.origin, event.user_id, frames.changed_frame(event, None), 200)
        answer = frames.changed_frame(event, message if event.origin.request_id is not None else None)
        # Every device of every member, the one that made the change included.
        return (_reply(event.origin, event.user_id, answer, 200)
                + fan_out(frames.message_updated_frame(event, message), members, connections))
    if isinstance(event, ChangeAcknowledged):
        message = timeline.current.get((event.conversation_id, event.seq)) if event.origin.request_id else None
        return _reply(event.origin, event.user_id, frames.changed_frame(event, message), 200)
    if isinstance(event, MessageDeduplicated):
        return _reply(event.origin, event.sender_id, frames.ack_frame(event), 202)
    if isinstance(event, ReceiptRecorded):
        # Every device of every member, the reader's own other devices included.
        return fan_out(frames.receipt_frame(event), members, connections)
    if isinstance(event, ConversationCreated):
        frame = frames.conversation_frame(frames.conversation_object(event))
        return _reply(event.origin, event.created_by, frame, 201) + fan_out(frame, members, connections)
    if isinstance(event, (ConversationUpdated, MembersAdded, MemberRemoved)) and conversation is not None:
        frame = frames.conversation_frame(conversation)
        actor = {ConversationUpdated: "updated_by", MembersAdded: "added_by", MemberRemoved: "removed_by"}
        status = 204 if isinstance(event, MemberRemoved) else 200
        return (_reply(event.origin, getattr(event, actor[type(event)]), frame, status)
                + fan_out(frame, members, connections))
    if isinstance(event, MessageRejected):
        return _reply(event.origin, event.sender_id,
                      frames.error_frame(event.code, event.message, event.client_msg_id), _status(event.code))
    if isinstance(event, CommandRejected):
        if event.code == "conflict" and conversation is not None and (
                (is_direct_id(event.conversation_id) and event.command == "ConversationCreateRequested")
                or event.command == "MembersAddRequested"):
            # Creating a direct conversation twice, or adding members again, answers with it as it is.
            return _reply(event.origin, event.user_id, frames.conversation_frame(conversation), 200)
        if (event.code == "conflict" and event.command == "ConversationCreateRequested" and conversation is not None
                and any(m["user_id"] == event.user_id for m in conversation["members"])):
            # A group created again: its id came from the creator's idempotency key (chat.ids.keyed_group_id),
            # so this is the creator's retry: the first answer (201), the group as it is now.
            return _reply(event.origin, event.user_id, frames.conversation_frame(conversation), 201)
        return _reply(event.origin, event.user_id, frames.error_frame(event.code, event.message, event.ref),
                      _status(event.code))
    return []


def _status(code: str) -> int:
    return ERRORS_BY_CODE[code].status if code in ERRORS_BY_CODE else 503


class DeliveryRouter:
    def __init__(self, conversations: ConversationProjection, connections: ConnectionRegistry) -> None:
        self.conversations = conversations
        self.connections = connections
        # Members per conversation. Only the owner of a conversation's partition writes its
        # membership events, and it updates this cache in log order, so it stays coherent.
        self._members: dict[str, list[str]] = {}

    def forget(self) -> None:
        self._members.clear()

    async def members_of(self, conversation_id: str) -> list[str]:
        members = self._members.get(conversation_id)
        if members is None:
            members = sorted(await self.conversations.members(conversation_id))
            self._members[conversation_id] = members
        return members

    async def route(self, events: Sequence[Event], timeline: TimelineOutcome | None = None) -> list[Routed]:
        return (await self.route_seen(events, timeline))[0]

    async def route_seen(self, events: Sequence[Event], timeline: TimelineOutcome | None = None
                         ) -> tuple[list[Routed], dict[str, dict[str, str]]]:
        """``route``, and the connections it read (user -> {device: gateway}): the push
        planner's "offline" is what this delivery saw."""
        per_event: list[tuple[Event, list[str], dict[str, Any] | None]] = []
        users: set[str] = set()
        for event in events:
            cid = getattr(event, "conversation_id", "")
            recipients: list[str] = []
            conversation = None
            if isinstance(event, ConversationCreated):
                self._members[cid] = sorted(m.user_id for m in event.members)
            if isinstance(event, (MessageAccepted, ConversationCreated, ConversationUpdated, MembersAdded,
                                  MemberRemoved, ReceiptRecorded, MessageEdited, MessageDeleted, ReactionChanged)):
                members = await self.members_of(cid)
                if isinstance(event, MembersAdded):
                    members = self._members[cid] = sorted(set(members) | {m.user_id for m in event.members})
                elif isinstance(event, MemberRemoved):
                    members = self._members[cid] = [m for m in members if m != event.member_id]
                    recipients = [event.member_id]  # hears of its own removal, then nothing more
                recipients = members + recipients
                users.update(recipients)
            if isinstance(event, (ConversationUpdated, MembersAdded, MemberRemoved)) or (
                    isinstance(event, CommandRejected) and event.code == "conflict"):
                conversation = await self.conversations.get(cid)
            per_event.append((event, recipients, conversation))
        connections = await self.connections.gateways(users)
        routed: list[Routed] = []
        for event, recipients, conversation in per_event:
            routed.extend(plan(event, recipients, connections, conversation, timeline))
        return routed, connections


class PresenceRouter:
    """``presence`` frames to the devices of everyone who shares a conversation with the user."""

    def __init__(self, conversations: ConversationProjection, connections: ConnectionRegistry,
                 hidden: Callable[[Sequence[str]], Awaitable[dict[str, set[str]]]] | None = None) -> None:
        self.conversations = conversations
        self.connections = connections
        # user -> the users they blocked, who never see their presence (projections.social).
        self.hidden = hidden

    async def route(self, events: Sequence[PresenceChanged]) -> list[Routed]:
        if not events:
            return []
        contacts = await self.conversations.contacts({e.user_id for e in events})
        if self.hidden is not None:
            for user_id, blocked in (await self.hidden(sorted(contacts))).items():
                contacts[user_id] -= blocked
        connections = await self.connections.gateways(set().union(*contacts.values()))
        routed: list[Routed] = []
        for event in events:
            routed.extend(fan_out(frames.presence_frame(event), sorted(contacts[event.user_id]), connections))
        return routed
