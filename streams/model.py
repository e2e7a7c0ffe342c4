"""The sequencer's pure decision logic: ``decide(state, command) -> events`` and
``evolve(state, event) -> state``. No I/O: time and fresh ids come in as arguments.

State is one ``ConversationState`` per conversation. ``Sequencer`` holds the states
of one partition and applies both functions in turn, so a command always sees the
effects of the commands decided before it.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field, replace
from typing import Callable, Collection, Iterable, Mapping

from chat.events import (
    ChangeAcknowledged,
    BlockChanged,
    BlockRequested,
    Command,
    CommandRejected,
    ConversationCreateRequested,
    ConversationCreated,
    ConversationUpdateRequested,
    ConversationUpdated,
    Event,
    Member,
    MemberRemoveRequested,
    MemberRemoved,
    MembersAddRequested,
    MembersAdded,
    MessageAccepted,
    MessageDeduplicated,
    MessageDeleteRequested,
    MessageDeleted,
    MessageEditRequested,
    MessageEdited,
    MessageRejected,
    MessageSendRequested,
    ReactionChanged,
    ReactionRequested,
    MuteChanged,
    MuteRequested,
    ReceiptRecordRequested,
    ReceiptRecorded,
    ReplyRef,
    change_time,
)
from chat.ids import direct_conversation_id

MAX_NAME_CHARS = 200
MAX_DESCRIPTION_CHARS = 2_000
DAY_MS = 86_400_000
MAX_EMOJI_BYTES = 64


@dataclass(frozen=True, slots=True)
class Limits:
    max_body_bytes: int = 65_536
    max_members: int = 1_000
    dedup_window_ms: int = DAY_MS
    edit_window_ms: int = 2 * DAY_MS
    retention_ms: int = 90 * DAY_MS
    max_reactions_per_user: int = 20


@dataclass(frozen=True, slots=True)
class SentRef:
    seq: int
    message_id: str
    sent_at: int


@dataclass(frozen=True, slots=True)
class MessageFacts:
    """What the sequencer keeps of each message within retention to decide changes to it.
    Never changed in place (a change puts new facts in their place), so a copy of a state's
    ``messages`` dict is a consistent copy of them (streams/snapshot_writer.py relies on it), and
    their snapshot encoding, once made, stays right (``encoded``: not copied by ``replace``)."""

    sender_id: str
    sent_at: int
    digest: bytes  # of the body: an edit to the same body changes nothing
    media_id: str | None
    deleted: bool = False
    reactions: dict[str, list[str]] | None = None  # emoji -> user ids, in order of reacting
    mentions: tuple[str, ...] = ()  # whom it mentions: a deletion takes it out of their unread
    # The snapshot's Avro of these facts at their seq (streams/snapshot_state.py ``freeze``).
    encoded: bytes | None = field(default=None, init=False, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class ChangeRef:
    """The answer given to a change id: the message's seq and the change_seq (None: no change)."""

    seq: int
    change_seq: int | None
    at: int


def digest(body: str) -> bytes:
    return hashlib.blake2b(body.encode(), digest_size=8).digest()


@dataclass(slots=True)
class ConversationState:
    conversation_id: str
    kind: str
    name: str
    description: str
    members: dict[str, str]  # user id -> role, in the order they joined (oldest first)
    created_by: str
    created_at: int
    last_seq: int = 0
    # Watermarks per member: every message up to this seq was delivered to / read by them.
    delivered: dict[str, int] = field(default_factory=dict)
    read: dict[str, int] = field(default_factory=dict)
    # (sender_id, client_msg_id) -> the accepted message, oldest first, pruned by time. Plain
    # dicts keep insertion order, at half an OrderedDict's size: a million conversations fit.
    recent: dict[tuple[str, str], SentRef] = field(default_factory=dict)
    # Protocol 1.1. Changes (edits, deletions, reactions) are numbered apart from messages.
    last_change_seq: int = 0
    # seq -> facts of each message within retention, in seq order (pruned as messages expire).
    messages: dict[int, MessageFacts] = field(default_factory=dict)
    # (user_id, change_id) -> the answer given, oldest first, pruned by time like ``recent``.
    recent_changes: dict[tuple[str, str], ChangeRef] = field(default_factory=dict)


# Who blocked whom, per direct conversation id: {conversation_id: {(blocker, blocked), ...}}.
# Kept beside the conversation states, since a block may come before its conversation exists.
Blocks = Mapping[str, Collection[tuple[str, str]]]
NO_BLOCKS: Blocks = {}


def blocked_in(blocks: Blocks, conversation_id: str, user_id: str) -> bool:
    """Whether ``user_id`` is blocked in ``conversation_id`` (by the other member of that direct
    conversation): their sends, edits and reactions there are refused ``forbidden``, and so is
    creating it. Always False for a group (blocks are only ever kept under direct ids)."""
    return any(blocked == user_id for _, blocked in blocks.get(conversation_id, ()))


def _reject(command: Command, code: str, message: str) -> MessageRejected | CommandRejected:
    if isinstance(command, MessageSendRequested):
        return MessageRejected(conversation_id=command.conversation_id, sender_id=command.sender_id,
                               client_msg_id=command.client_msg_id, code=code, message=message,
                               origin=command.origin)
    user_id = command.creator_id if isinstance(command, ConversationCreateRequested) else command.user_id
    return CommandRejected(conversation_id=command.conversation_id, command=command.TYPE,
                           user_id=user_id, code=code, message=message, origin=command.origin,
                           ref=getattr(command, "change_id", None))


def decide(state: ConversationState | None, command: Event, *, now_ms: int, new_id: str,
           limits: Limits = Limits(), blocks: Blocks = NO_BLOCKS) -> list[Event]:
    """The events a command produces against the current state of its conversation.
    ``blocks``: the partition's blocks (``Sequencer.blocks``), read with ``blocked_in``."""
    if isinstance(command, MessageSendRequested):
        refused = _refuse_blocked_send(state, command, blocks, now_ms, limits)
        return [refused or _decide_send(state, command, now_ms, new_id, limits)]
    if isinstance(command, ConversationCreateRequested):
        if command.kind == "direct" and blocked_in(blocks, command.conversation_id, command.creator_id):
            # Refused even when the conversation exists: the blocked user learns nothing more.
            return [_reject(command, "forbidden", "you cannot start a conversation with this user")]
        return [_decide_create(state, command, now_ms, limits)]
    if isinstance(command, BlockRequested):
        return [_decide_block(command, now_ms)]
    if isinstance(command, MuteRequested):
        return [_decide_mute(state, command, now_ms)]
    if isinstance(command, (ConversationUpdateRequested, MembersAddRequested, MemberRemoveRequested)):
        return [_decide_membership(state, command, now_ms, limits)]
    if isinstance(command, ReceiptRecordRequested):
        return _decide_receipt(state, command, now_ms)
    if isinstance(command, (MessageEditRequested, MessageDeleteRequested, ReactionRequested)):
        return [_decide_change(state, command, now_ms, limits, blocks)]
    return []


def _decide_change(state: ConversationState | None,
                   cmd: MessageEditRequested | MessageDeleteRequested | ReactionRequested,
                   now_ms: int, limits: Limits, blocks: Blocks = NO_BLOCKS) -> Event:
    """An edit, deletion or reaction (protocol 1.1): who may, what it changes, and idempotence by
    the client's change id. A refusal is not remembered; an answer, even "nothing changed", is."""
    if state is None or cmd.user_id not in state.members:
        return _reject(cmd, "not_found", "no such conversation")
    if not cmd.change_id:
        return _reject(cmd, "bad_request", "id is required")
    seen = state.recent_changes.get((cmd.user_id, cmd.change_id))
    if seen is not None and now_ms - seen.at < limits.dedup_window_ms:
        return _unchanged(cmd, seen.seq, seen.change_seq, now_ms)
    if not isinstance(cmd, MessageDeleteRequested) and blocked_in(blocks, cmd.conversation_id, cmd.user_id):
        # A blocked user's edits and reactions in the direct conversation, like their sends.
        return _reject(cmd, "forbidden", "you cannot change messages in this conversation")
    if isinstance(cmd, ReactionRequested) and not 1 <= len(cmd.emoji.encode()) <= MAX_EMOJI_BYTES:
        return _reject(cmd, "bad_request", f"emoji must be 1 to {MAX_EMOJI_BYTES} bytes of UTF-8")
    facts = state.messages.get(cmd.seq)
    if facts is None or facts.sent_at + limits.retention_ms <= now_ms:
        return _reject(cmd, "not_found", "no such message")
    change_seq = state.last_change_seq + 1
    common = {"conversation_id": cmd.conversation_id, "seq": cmd.seq, "change_seq": change_seq,
              "change_id": cmd.change_id, "user_id": cmd.user_id, "origin": cmd.origin}
    if isinstance(cmd, MessageEditRequested):
        if cmd.user_id != facts.sender_id:
            return _reject(cmd, "forbidden", "only the sender edits a message")
        if facts.deleted:
            return _reject(cmd, "conflict", "the message is deleted")
        if now_ms - facts.sent_at > limits.edit_window_ms:
            return _reject(cmd, "forbidden", "the message is past its edit window")
        if len(cmd.body.encode()) > limits.max_body_bytes:
            return _reject(cmd, "too_large", f"body is over {limits.max_body_bytes} bytes")
        if not cmd.body and facts.media_id is None:
            return _reject(cmd, "bad_request", "body is empty")
        if digest(cmd.body) == facts.digest:
            return _unchanged(cmd, cmd.seq, None, now_ms)
        return MessageEdited(body=cmd.body, edited_at=now_ms, **common)
    if isinstance(cmd, MessageDeleteRequested):
        admin = state.kind == "group" and state.members[cmd.user_id] == "admin"
        if cmd.user_id != facts.sender_id and not admin:
            return _reject(cmd, "forbidden", "only the sender or a group admin deletes a message")
        if facts.deleted:
            return _unchanged(cmd, cmd.seq, None, now_ms)
        return MessageDeleted(deleted_at=now_ms, media_id=facts.media_id, mentions=list(facts.mentions), **common)
    if facts.deleted:
        return _reject(cmd, "conflict", "the message is deleted")
    reactions = facts.reactions or {}
    already = cmd.user_id in reactions.get(cmd.emoji, ())
    if already == cmd.on:
        return _unchanged(cmd, cmd.seq, None, now_ms)
    if cmd.on and sum(cmd.user_id in users for users in reactions.values()) >= limits.max_reactions_per_user:
        return _reject(cmd, "bad_request",
                       f"at most {limits.max_reactions_per_user} different emoji per user on a message")
    return ReactionChanged(emoji=cmd.emoji, on=cmd.on, changed_at=now_ms, **common)


def _unchanged(cmd: MessageEditRequested | MessageDeleteRequested | ReactionRequested, seq: int,
               change_seq: int | None, now_ms: int) -> ChangeAcknowledged:
    return ChangeAcknowledged(conversation_id=cmd.conversation_id, seq=seq, change_seq=change_seq,
                              change_id=cmd.change_id, user_id=cmd.user_id, command=cmd.TYPE,
                              answered_at=now_ms, origin=cmd.origin)
def _refuse_blocked_send(state: ConversationState | None, cmd: MessageSendRequested, blocks: Blocks,
                         now_ms: int, limits: Limits) -> MessageRejected | None:
    """A blocked member's send in the direct conversation: refused, after the membership check
    (a stranger still reads not_found) and after dedup (a re-send of a message accepted before
    the block gets its ack again)."""
    if state is None or cmd.sender_id not in state.members or not blocked_in(blocks, cmd.conversation_id,
                                                                              cmd.sender_id):
        return None
    sent = state.recent.get((cmd.sender_id, cmd.client_msg_id))
    if sent is not None and now_ms - sent.sent_at < limits.dedup_window_ms:
        return None
    return _reject(cmd, "forbidden", "you cannot send messages to this user")  # type: ignore[return-value]


def _decide_block(cmd: BlockRequested, now_ms: int) -> Event:
    if cmd.user_id == cmd.blocked_id:
        return _reject(cmd, "bad_request", "you cannot block yourself")
    if cmd.conversation_id != direct_conversation_id(cmd.user_id, cmd.blocked_id):
        return _reject(cmd, "bad_request", "a block is keyed by the pair's direct conversation id")
    # Written also when nothing changes: the request is answered by it (PUT and DELETE are idempotent).
    return BlockChanged(conversation_id=cmd.conversation_id, user_id=cmd.user_id, blocked_id=cmd.blocked_id,
                        blocked=cmd.blocked, changed_at=now_ms, origin=cmd.origin)


def _decide_mute(state: ConversationState | None, cmd: MuteRequested, now_ms: int) -> Event:
    if state is None or cmd.user_id not in state.members:
        return _reject(cmd, "not_found", "no such conversation")
    if cmd.muted_until is not None and cmd.muted_until < -1:
        return _reject(cmd, "bad_request", "muted_until must be null, -1 or a time in ms")
    return MuteChanged(conversation_id=cmd.conversation_id, user_id=cmd.user_id, muted_until=cmd.muted_until,
                       changed_at=now_ms, origin=cmd.origin)


def is_muted(muted_until: int | None, now_ms: int) -> bool:
    """Whether a mute holds at ``now_ms``: -1 until unmuted, otherwise until the given time."""
    return muted_until is not None and (muted_until == -1 or muted_until > now_ms)


def _decide_receipt(state: ConversationState | None, cmd: ReceiptRecordRequested, now_ms: int) -> list[Event]:
    """A receipt that moves a watermark forward is recorded; a lower or repeated one is nothing."""
    if state is None or cmd.user_id not in state.members:
        return [_reject(cmd, "not_found", "no such conversation")]
    if cmd.status not in ("delivered", "read"):
        return [_reject(cmd, "bad_request", 'status must be "delivered" or "read"')]
    if not 1 <= cmd.seq <= state.last_seq:
        return [_reject(cmd, "bad_request", f"seq must be between 1 and {state.last_seq}")]
    marks = state.read if cmd.status == "read" else state.delivered
    if cmd.seq <= marks.get(cmd.user_id, 0):
        return []
    return [ReceiptRecorded(conversation_id=cmd.conversation_id, user_id=cmd.user_id, seq=cmd.seq,
                            status=cmd.status, recorded_at=now_ms)]


def _decide_send(state: ConversationState | None, cmd: MessageSendRequested, now_ms: int,
                 new_id: str, limits: Limits) -> Event:
    # Unknown and not-a-member read the same, so nothing leaks about other conversations.
    if state is None or cmd.sender_id not in state.members:
        return _reject(cmd, "not_found", "no such conversation")
    sent = state.recent.get((cmd.sender_id, cmd.client_msg_id))
    if sent is not None and now_ms - sent.sent_at < limits.dedup_window_ms:
        return MessageDeduplicated(
            conversation_id=cmd.conversation_id, seq=sent.seq, message_id=sent.message_id,
            sender_id=cmd.sender_id, client_msg_id=cmd.client_msg_id, sent_at=sent.sent_at,
            origin=cmd.origin,
        )
    if not cmd.client_msg_id:
        return _reject(cmd, "bad_request", "client_msg_id is required")
    if len(cmd.body.encode()) > limits.max_body_bytes:
        return _reject(cmd, "too_large", f"body is over {limits.max_body_bytes} bytes")
    # The gateway looked media_id up (it exists, the sender may read it) and put its metadata in
    # the command: the sequencer cannot look it up. A media_id without it is unknown.
    if cmd.media_id is not None and (cmd.media is None or cmd.media.media_id != cmd.media_id):
        return _reject(cmd, "bad_request", "unknown media_id")
    if not cmd.body and cmd.media is None:
        return _reject(cmd, "bad_request", "body is empty")
    reply_to = None
    if cmd.reply_to is not None:
        replied = state.messages.get(cmd.reply_to)
        if replied is None or replied.sent_at + limits.retention_ms <= now_ms:
            return _reject(cmd, "bad_request", "reply_to is not a message of this conversation")
        reply_to = ReplyRef(cmd.reply_to, replied.sender_id)
    # Mentions of non-members are dropped, never refused (PROTOCOL.md 1.1).
    mentions = [u for u in dict.fromkeys(cmd.mentions) if u in state.members]
    return MessageAccepted(
        conversation_id=cmd.conversation_id, seq=state.last_seq + 1, message_id=new_id,
        sender_id=cmd.sender_id, client_msg_id=cmd.client_msg_id, body=cmd.body,
        sent_at=now_ms, origin=cmd.origin, media=cmd.media if cmd.media_id is not None else None,
        reply_to=reply_to, mentions=mentions,
    )


def _decide_create(state: ConversationState | None, cmd: ConversationCreateRequested,
                   now_ms: int, limits: Limits) -> Event:
    if state is not None:
        return _reject(cmd, "conflict", "conversation exists")
    others = list(dict.fromkeys(m for m in cmd.member_ids if m and m != cmd.creator_id))
    if cmd.kind == "direct":
        if len(others) != 1:
            return _reject(cmd, "bad_request", "a direct conversation has exactly one peer")
        if cmd.conversation_id != direct_conversation_id(cmd.creator_id, others[0]):
            return _reject(cmd, "bad_request", "direct conversation id does not match its members")
        members = [Member(cmd.creator_id, "member"), Member(others[0], "member")]
    elif cmd.kind == "group":
        if len(others) + 1 > limits.max_members:
            return _reject(cmd, "too_large", f"a group has at most {limits.max_members} members")
        if len(cmd.name) > MAX_NAME_CHARS or len(cmd.description) > MAX_DESCRIPTION_CHARS:
            return _reject(cmd, "too_large", "name or description too long")
        members = [Member(cmd.creator_id, "admin")] + [Member(u, "member") for u in others]
    else:
        return _reject(cmd, "bad_request", f"unknown conversation type {cmd.kind!r}")
    return ConversationCreated(
        conversation_id=cmd.conversation_id, kind=cmd.kind,
        name=cmd.name if cmd.kind == "group" else "",
        description=cmd.description if cmd.kind == "group" else "",
        members=members, created_by=cmd.creator_id, created_at=now_ms, origin=cmd.origin,
    )


def _decide_membership(state: ConversationState | None,
                       cmd: ConversationUpdateRequested | MembersAddRequested | MemberRemoveRequested,
                       now_ms: int, limits: Limits) -> Event:
    if state is None or cmd.user_id not in state.members:
        return _reject(cmd, "not_found", "no such conversation")
    if state.kind == "direct":
        return _reject(cmd, "forbidden", "a direct conversation never changes")
    is_admin = state.members[cmd.user_id] == "admin"
    if isinstance(cmd, ConversationUpdateRequested):
        if not is_admin:
            return _reject(cmd, "forbidden", "only admins change a group")
        if cmd.name is None and cmd.description is None:
            return _reject(cmd, "bad_request", "nothing to change: give name or description")
        if len(cmd.name or "") > MAX_NAME_CHARS or len(cmd.description or "") > MAX_DESCRIPTION_CHARS:
            return _reject(cmd, "too_large", "name or description too long")
        return ConversationUpdated(conversation_id=cmd.conversation_id, updated_by=cmd.user_id,
                                   updated_at=now_ms, origin=cmd.origin, name=cmd.name,
                                   description=cmd.description)
    if isinstance(cmd, MembersAddRequested):
        if not is_admin:
            return _reject(cmd, "forbidden", "only admins add members")
        new = [u for u in dict.fromkeys(cmd.member_ids) if u and u not in state.members]
        if not new:
            return _reject(cmd, "conflict", "they are members already")
        if len(state.members) + len(new) > limits.max_members:
            return _reject(cmd, "too_large", f"a group has at most {limits.max_members} members")
        return MembersAdded(conversation_id=cmd.conversation_id, added_by=cmd.user_id,
                            members=[Member(u, "member") for u in new], at_seq=state.last_seq,
                            added_at=now_ms, origin=cmd.origin)
    if cmd.member_id not in state.members:
        return _reject(cmd, "not_found", "no such member")
    if cmd.member_id != cmd.user_id and not is_admin:
        return _reject(cmd, "forbidden", "only admins remove other members")
    return MemberRemoved(conversation_id=cmd.conversation_id, removed_by=cmd.user_id,
                         member_id=cmd.member_id, at_seq=state.last_seq, removed_at=now_ms,
                         origin=cmd.origin, promoted=_successor(state, cmd.member_id))


def _successor(state: ConversationState, leaving: str) -> str | None:
    """Who becomes admin when the last admin leaves: the longest-standing member left."""
    remaining = [u for u in state.members if u != leaving]
    if not remaining or any(state.members[u] == "admin" for u in remaining):
        return None
    return remaining[0]


def evolve(state: ConversationState | None, event: Event, *,
           dedup_window_ms: int = DAY_MS, retention_ms: int = 90 * DAY_MS) -> ConversationState | None:
    """The state after an event. Idempotent: an event already applied changes nothing.

    A message updates the state in place and returns it: copying a day's dedup map for
    every message would make the sequencer quadratic. Callers treat the result as the state.
    """
    if isinstance(event, ConversationCreated):
        if state is not None:
            return state
        return ConversationState(
            conversation_id=event.conversation_id, kind=_i(event.kind), name=event.name,
            description=event.description, members={_i(m.user_id): _i(m.role) for m in event.members},
            created_by=_i(event.created_by), created_at=event.created_at,
        )
    if state is None:
        return None
    if isinstance(event, ConversationUpdated):
        state.name = event.name if event.name is not None else state.name
        state.description = event.description if event.description is not None else state.description
    elif isinstance(event, MembersAdded):
        for m in event.members:
            state.members.setdefault(_i(m.user_id), _i(m.role))
    elif isinstance(event, ReceiptRecorded):
        _advance(state.delivered, event.user_id, event.seq)
        if event.status == "read":
            _advance(state.read, event.user_id, event.seq)
    elif isinstance(event, MemberRemoved):
        state.members.pop(event.member_id, None)
        state.delivered.pop(event.member_id, None)
        state.read.pop(event.member_id, None)
        if event.promoted is not None and event.promoted in state.members:
            state.members[_i(event.promoted)] = "admin"
    if isinstance(event, MessageAccepted) and event.seq > state.last_seq:
        state.last_seq = event.seq
        # Sending a message reads everything before it.
        _advance(state.delivered, event.sender_id, event.seq)
        _advance(state.read, event.sender_id, event.seq)
        recent = state.recent
        sender = _i(event.sender_id)
        recent[(sender, event.client_msg_id)] = SentRef(event.seq, event.message_id, event.sent_at)
        horizon = event.sent_at - dedup_window_ms
        while recent:
            oldest = next(iter(recent.values()))
            if oldest.sent_at >= horizon:
                break
            del recent[next(iter(recent))]
        messages = state.messages
        messages[event.seq] = MessageFacts(sender, event.sent_at, digest(event.body),
                                           event.media.media_id if event.media is not None else None,
                                           mentions=tuple(map(_i, event.mentions)))
        expired = event.sent_at - retention_ms
        while messages:
            seq, oldest_message = next(iter(messages.items()))
            if oldest_message.sent_at > expired:
                break
            del messages[seq]
        _prune_changes(state.recent_changes, horizon)
    elif isinstance(event, (MessageEdited, MessageDeleted, ReactionChanged)) and event.change_seq > state.last_change_seq:
        state.last_change_seq = event.change_seq
        facts = state.messages.get(event.seq)
        if facts is not None:
            state.messages[event.seq] = _change_facts(facts, event)
        at = change_time(event)
        state.recent_changes[(_i(event.user_id), event.change_id)] = ChangeRef(event.seq, event.change_seq, at)
        _prune_changes(state.recent_changes, at - dedup_window_ms)
    elif isinstance(event, ChangeAcknowledged) and event.change_seq is None:
        # "Nothing changed" is an answer too: a retry of its id gets it again, whatever it asks.
        state.recent_changes.setdefault((_i(event.user_id), event.change_id),
                                        ChangeRef(event.seq, None, event.answered_at))
    return state


def _change_facts(facts: MessageFacts, event: MessageEdited | MessageDeleted | ReactionChanged) -> MessageFacts:
    """New facts with the change applied (reactions copied, never changed in place)."""
    if isinstance(event, MessageEdited):
        return replace(facts, digest=digest(event.body))
    if isinstance(event, MessageDeleted):
        return replace(facts, deleted=True, reactions=None, digest=digest(""))
    reactions = {emoji: list(users) for emoji, users in (facts.reactions or {}).items()}
    users = reactions.setdefault(event.emoji, [])
    if event.on and event.user_id not in users:
        users.append(_i(event.user_id))
    elif not event.on and event.user_id in users:
        users.remove(event.user_id)
        if not users:
            del reactions[event.emoji]
    return replace(facts, reactions=reactions or None)


def _prune_changes(recent: dict[tuple[str, str], ChangeRef], horizon: int) -> None:
    while recent:
        oldest = next(iter(recent.values()))
        if oldest.at >= horizon:
            break
        del recent[next(iter(recent))]


def _advance(marks: dict[str, int], user_id: str, seq: int) -> None:
    if seq > marks.get(user_id, 0):
        marks[_i(user_id)] = seq


def _i(value: str) -> str:
    """One string object per user id (and kind, role) however many conversations name it: every
    decoded event brings its own copies, and a million conversations keep a few each."""
    return sys.intern(value)


class Sequencer:
    """The conversation states of one partition, with decide and evolve applied in turn.

    States are hot (``conversations``, objects) or cold (``cold``: a frozen form, bytes, made
    and read by the ``freeze`` and ``thaw`` functions given, e.g. the snapshot record): a
    conversation is thawed on its first event or command, so idle ones cost their bytes only.
    ``dirty`` holds the conversations (and ``dirty_blocks`` the block keys) changed since the
    caller last took them (hot, or cold when a recovery froze them: ``freeze_idle``); ``touched`` those that events reached since the caller last cleared it.
    ``offset``: the events offset up to which the state includes every event (-1: none).
    """

    def __init__(self, limits: Limits = Limits(),
                 thaw: Callable[[bytes], ConversationState] | None = None) -> None:
        self.limits = limits
        self.conversations: dict[str, ConversationState] = {}
        self.cold: dict[str, bytes] = {}
        self.thaw = thaw
        self.blocks: dict[str, set[tuple[str, str]]] = {}  # see ``Blocks``
        self.dirty: set[str] = set()
        self.dirty_blocks: set[str] = set()
        self.touched: set[str] = set()
        self.offset = -1

    def state_of(self, conversation_id: str) -> ConversationState | None:
        """The conversation's state, thawed (and hot from then on) if it was cold."""
        state = self.conversations.get(conversation_id)
        if state is None and conversation_id in self.cold:
            assert self.thaw is not None, "cold states need a thaw function"
            state = self.conversations[conversation_id] = self.thaw(self.cold.pop(conversation_id))
        return state

    def freeze(self, frozen: Mapping[str, bytes]) -> int:
        """Make these conversations cold, given their frozen forms; the ones touched or dirty
        meanwhile stay hot (their form may be torn or stale). Returns how many went cold."""
        moved = 0
        for conversation_id, blob in frozen.items():
            if conversation_id in self.touched or conversation_id in self.dirty:
                continue
            if self.conversations.pop(conversation_id, None) is not None:
                self.cold[conversation_id] = blob
                moved += 1
        return moved

    def apply(self, event: Event) -> None:
        conversation_id = getattr(event, "conversation_id", None)
        if conversation_id is None:
            return
        if isinstance(event, BlockChanged):
            apply_block(self.blocks, event)
            self.dirty_blocks.add(conversation_id)
            return
        current = self.state_of(conversation_id)
        updated = evolve(current, event, dedup_window_ms=self.limits.dedup_window_ms,
                         retention_ms=self.limits.retention_ms)
        if updated is not None:
            self.conversations[conversation_id] = updated
            self.dirty.add(conversation_id)
            self.touched.add(conversation_id)

    def apply_all(self, events: Iterable[Event]) -> None:
        for event in events:
            self.apply(event)

    def expires_at(self, event: Event) -> int:
        """When the message an event is about expires (ms): its ``sent_at`` plus retention."""
        sent_at = getattr(event, "sent_at", None)
        if sent_at is None:
            state = self.state_of(getattr(event, "conversation_id", ""))
            facts = state.messages.get(getattr(event, "seq", 0)) if state is not None else None
            sent_at = facts.sent_at if facts is not None else getattr(event, "edited_at", 0)
        return sent_at + self.limits.retention_ms

    def handle(self, command: Event, *, now_ms: int, new_id: Callable[[], str]) -> list[Event]:
        state = self.state_of(getattr(command, "conversation_id", ""))
        events = decide(state, command, now_ms=now_ms, new_id=new_id(), limits=self.limits, blocks=self.blocks)
        self.apply_all(events)
        return events


def apply_block(blocks: dict[str, set[tuple[str, str]]], event: BlockChanged) -> None:
    """Record a ``BlockChanged`` in a partition's blocks (idempotent)."""
    pairs = blocks.setdefault(event.conversation_id, set())
    if event.blocked:
        pairs.add((event.user_id, event.blocked_id))
    else:
        pairs.discard((event.user_id, event.blocked_id))
        if not pairs:
            del blocks[event.conversation_id]
