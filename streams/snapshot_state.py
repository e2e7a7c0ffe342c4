"""The sequencer's state as snapshot records, and back; and the log's tail applied over them.

Pure: no I/O. A ``ConversationSnapshot`` is one conversation's whole ``ConversationState`` as of
an events offset (``upto``); the same encoded bytes are what the snapshots topic carries and a
sequencer's cold form of an idle conversation (``Sequencer.cold``). ``apply_logged`` applies an
event read from the log at an offset, skipping what a snapshot already includes, so replaying a
tail over snapshots is idempotent even for events that are not (a member removed, then re-added).
"""

from __future__ import annotations

import sys
from typing import Any, Mapping

from chat.codec import Codec, default_codec, zigzag
from chat.events import BlockChanged, BlocksSnapshot, ConversationSnapshot, Event, Member
from streams.model import ChangeRef, ConversationState, MessageFacts, Sequencer, SentRef

BLOCKS_PREFIX = "\x00blocks:"
CHECKPOINT_KEY = b"\x00checkpoint"
_i = sys.intern


def conversation_key(conversation_id: str) -> bytes:
    return conversation_id.encode()


def blocks_key(conversation_id: str) -> bytes:
    return (BLOCKS_PREFIX + conversation_id).encode()


def snapshot_of(state: ConversationState, upto: int, messages: bool = True) -> ConversationSnapshot:
    """The record of a conversation's state that includes every event at or before ``upto``
    (its ``messages`` left empty unless ``messages``)."""
    users = list(dict.fromkeys([*state.delivered, *state.read]))
    return ConversationSnapshot(
        conversation_id=state.conversation_id, upto=upto, kind=state.kind, name=state.name,
        description=state.description, created_by=state.created_by, created_at=state.created_at,
        last_seq=state.last_seq, last_change_seq=state.last_change_seq,
        members=[Member(u, role) for u, role in state.members.items()],
        marks=[{"user_id": u, "delivered": state.delivered.get(u, 0), "read": state.read.get(u, 0)} for u in users],
        messages=[_fact_record(seq, f) for seq, f in list(state.messages.items())] if messages else [],
        recent=[{"sender_id": s, "client_msg_id": c, "seq": r.seq, "message_id": r.message_id, "sent_at": r.sent_at}
                for (s, c), r in list(state.recent.items())],
        recent_changes=[{"user_id": u, "change_id": c, "seq": r.seq, "change_seq": r.change_seq, "at": r.at}
                        for (u, c), r in list(state.recent_changes.items())],
    )


def copy_of(state: ConversationState) -> ConversationState:
    """A copy that later events leave alone: its containers copied (C-level copies, cheap even
    for a large conversation); the facts, refs and strings in them are never changed in place."""
    return ConversationState(
        conversation_id=state.conversation_id, kind=state.kind, name=state.name, description=state.description,
        members=dict(state.members), created_by=state.created_by, created_at=state.created_at,
        last_seq=state.last_seq, delivered=dict(state.delivered), read=dict(state.read), recent=dict(state.recent),
        last_change_seq=state.last_change_seq, messages=dict(state.messages),
        recent_changes=dict(state.recent_changes))


def _fact_record(seq: int, facts: MessageFacts) -> dict[str, Any]:
    reactions = facts.reactions
    return {"seq": seq, "sender_id": facts.sender_id, "sent_at": facts.sent_at, "digest": facts.digest,
            "media_id": facts.media_id, "deleted": facts.deleted,
            "reactions": None if reactions is None else [{"emoji": e, "user_ids": list(users)}
                                                         for e, users in list(reactions.items())],
            "mentions": list(facts.mentions)}


def state_of(snapshot: ConversationSnapshot) -> ConversationState:
    """The ``ConversationState`` a snapshot record holds (user ids interned, as evolve does)."""
    state = ConversationState(
        conversation_id=snapshot.conversation_id, kind=_i(snapshot.kind), name=snapshot.name,
        description=snapshot.description, members={_i(m.user_id): _i(m.role) for m in snapshot.members},
        created_by=_i(snapshot.created_by), created_at=snapshot.created_at, last_seq=snapshot.last_seq,
        last_change_seq=snapshot.last_change_seq)
    for mark in snapshot.marks:
        user = _i(mark["user_id"])
        if mark["delivered"]:
            state.delivered[user] = mark["delivered"]
        if mark["read"]:
            state.read[user] = mark["read"]
    for m in snapshot.messages:
        reactions = None if m["reactions"] is None else {
            r["emoji"]: [_i(u) for u in r["user_ids"]] for r in m["reactions"]}
        state.messages[m["seq"]] = MessageFacts(_i(m["sender_id"]), m["sent_at"], m["digest"], m["media_id"],
                                                m["deleted"], reactions, tuple(map(_i, m["mentions"])))
    for r in snapshot.recent:
        state.recent[(_i(r["sender_id"]), r["client_msg_id"])] = SentRef(r["seq"], r["message_id"], r["sent_at"])
    for c in snapshot.recent_changes:
        state.recent_changes[(_i(c["user_id"]), c["change_id"])] = ChangeRef(c["seq"], c["change_seq"], c["at"])
    return state


def freeze(state: ConversationState, upto: int, codec: Codec | None = None) -> bytes:
    """A conversation's cold form: its snapshot record, encoded as on the snapshots topic.

    The bytes are the codec's for ``snapshot_of(state, upto)``, but each message's facts are
    encoded once and kept with them (``MessageFacts.encoded``; facts are never changed in
    place): a round re-encoded every message of every busy conversation within retention,
    about 10 us each, every ``snapshot_interval_s`` (bench/RESULTS.md, snapshot encoding)."""
    around = (codec or default_codec()).around(ConversationSnapshot.TYPE, "messages")
    record = snapshot_of(state, upto, messages=False).to_record()
    items = [facts.encoded or _encode_facts(seq, facts) for seq, facts in list(state.messages.items())]
    return around.envelope(around.payload(record, items), key=state.conversation_id)


def _encode_facts(seq: int, facts: MessageFacts) -> bytes:
    """A ``MessageFact`` record's Avro, written by hand (a fastavro call per fact cost twice the
    whole record's encoding), and kept with the facts (which only ever sit at their own seq). A
    unit test holds ``freeze``'s whole record to the codec's (fastavro's) bytes."""
    text = _text
    parts = [zigzag(seq), text(facts.sender_id), zigzag(facts.sent_at), zigzag(len(facts.digest)), facts.digest,
             b"\x00" if facts.media_id is None else b"\x02" + text(facts.media_id),
             b"\x01" if facts.deleted else b"\x00"]
    reactions = facts.reactions
    if reactions is None:
        parts.append(b"\x00")
    else:
        parts.append(b"\x02")
        parts.append(_array([text(emoji) + _array([text(u) for u in users]) for emoji, users in list(reactions.items())]))
    parts.append(_array([text(u) for u in facts.mentions]))
    encoded = b"".join(parts)
    object.__setattr__(facts, "encoded", encoded)  # frozen facts: set once, the same bytes by anyone
    return encoded


def _text(value: str) -> bytes:
    raw = value.encode()
    return zigzag(len(raw)) + raw


def _array(items: list[bytes]) -> bytes:
    return b"".join((zigzag(len(items)), *items, b"\x00")) if items else b"\x00"



def thaw_with_upto(blob: bytes, codec: Codec | None = None) -> tuple[ConversationState, int]:
    snapshot = (codec or default_codec()).decode(blob).event
    assert isinstance(snapshot, ConversationSnapshot), f"not a conversation snapshot: {snapshot.TYPE}"
    return state_of(snapshot), snapshot.upto


def thaw(blob: bytes) -> ConversationState:
    """The state a cold form holds (``Sequencer(thaw=thaw)``)."""
    return thaw_with_upto(blob)[0]


def freeze_idle(sequencer: Sequencer, upto: int) -> int:
    """During a recovery: make cold every hot conversation that no event reached since the last
    call (``sequencer.touched``), its state as of ``upto`` (every event at or before it applied).
    They stay dirty: the first snapshot round writes their cold form as it is, which is their
    snapshot (an event after ``upto`` would have thawed them). So a replay of the whole log holds
    as objects only the conversations it reached lately. Returns how many went cold."""
    touched, sequencer.touched = sequencer.touched, set()
    idle = [cid for cid in sequencer.conversations if cid not in touched]
    for cid in idle:
        sequencer.cold[cid] = freeze(sequencer.conversations.pop(cid), upto)
    return len(idle)


def blocks_snapshot(blocks: Mapping[str, set[tuple[str, str]]], conversation_id: str,
                    upto: int) -> BlocksSnapshot | None:
    """The blocks under one direct conversation id as a record; None when there are none (a
    tombstone on the topic)."""
    pairs = sorted(blocks.get(conversation_id, ()))
    if not pairs:
        return None
    return BlocksSnapshot(conversation_id=conversation_id, upto=upto, blockers=[a for a, _ in pairs],
                          blocked=[b for _, b in pairs])


def restore_blocks(sequencer: Sequencer, snapshot: BlocksSnapshot, stamps: dict[str, int]) -> None:
    sequencer.blocks[snapshot.conversation_id] = {(_i(a), _i(b)) for a, b in zip(snapshot.blockers, snapshot.blocked)}
    stamps[BLOCKS_PREFIX + snapshot.conversation_id] = snapshot.upto


def apply_logged(sequencer: Sequencer, offset: int, event: Event, stamps: dict[str, int]) -> bool:
    """Apply an event read from the log at ``offset`` unless the snapshot its conversation (or
    its blocks) came from already includes it. A cold conversation is thawed first, its
    snapshot's ``upto`` noted in ``stamps``. Returns whether the event was applied."""
    conversation_id = getattr(event, "conversation_id", None)
    if conversation_id is None:
        return False
    if isinstance(event, BlockChanged):
        stamp = stamps.get(BLOCKS_PREFIX + conversation_id, -1)
    else:
        if conversation_id in sequencer.cold:
            state, upto = thaw_with_upto(sequencer.cold.pop(conversation_id))
            sequencer.conversations[conversation_id] = state
            stamps[conversation_id] = upto
        stamp = stamps.get(conversation_id, -1)
    if offset <= stamp:
        return False
    sequencer.apply(event)
    return True
