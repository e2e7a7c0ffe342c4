"""What the projector writes to the timeline store for a batch of events, and what it learns
there for delivery: new messages (with the preview of the message each reply quotes, read as it
is now) and changes (protocol 1.1: edits, deletions, reactions), applied in log order to the
messages as stored, each change's result kept for its ``message_updated`` frame.

A change is idempotent by ``change_seq`` (``apply_change``), so a batch projected twice, after a
crash, ends in the same state; the change log's entries are first-write-wins.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Sequence

from chat.events import ChangeAcknowledged, Event, MessageAccepted, MessageDeleted, MessageEdited, ReactionChanged
from chat.frames import message_object
from projections.search import SearchDoc, SearchIndex
from projections.timelines import StoredChange, TimelineMessage, TimelineStore, apply_change, stored_change

Key = tuple[str, int]  # (conversation_id, seq or change_seq)
_CHANGES = (MessageEdited, MessageDeleted, ReactionChanged)


@dataclass
class TimelineOutcome:
    replies: dict[Key, dict[str, Any]] = field(default_factory=dict)  # (cid, seq): a new reply, preview filled in
    changed: dict[Key, dict[str, Any]] = field(default_factory=dict)  # (cid, change_seq): the message after it
    current: dict[Key, dict[str, Any]] = field(default_factory=dict)  # (cid, seq): as it is now, for answers


async def project_timeline(store: TimelineStore, events: Sequence[Event]) -> TimelineOutcome:
    accepted = [e for e in events if isinstance(e, MessageAccepted)]
    if accepted:
        await store.append([TimelineMessage(**message_object(e)) for e in accepted])
    outcome = TimelineOutcome()
    wanted: dict[str, set[int]] = defaultdict(set)
    for e in events:
        if isinstance(e, MessageAccepted) and e.reply_to is not None:
            wanted[e.conversation_id].add(e.seq)
        elif isinstance(e, _CHANGES):
            wanted[e.conversation_id].add(e.seq)
        elif isinstance(e, ChangeAcknowledged) and e.origin.request_id is not None:
            wanted[e.conversation_id].add(e.seq)
    if not wanted:
        return outcome
    conversations = list(wanted)
    found = await asyncio.gather(*(store.messages(c, sorted(wanted[c])) for c in conversations))
    current: dict[Key, TimelineMessage] = {(c, seq): m for c, ms in zip(conversations, found) for seq, m in ms.items()}
    touched: dict[Key, TimelineMessage] = {}
    entries: list[StoredChange] = []
    for e in events:
        if isinstance(e, MessageAccepted) and e.reply_to is not None and (e.conversation_id, e.seq) in current:
            outcome.replies[(e.conversation_id, e.seq)] = current[(e.conversation_id, e.seq)].to_dict()
        elif isinstance(e, _CHANGES):
            key = (e.conversation_id, e.seq)
            message = current.get(key)
            if message is None:  # expired (or never stored): nothing to change or show
                continue
            message = current[key] = touched[key] = apply_change(message, e)
            entries.append(stored_change(e, message))
            outcome.changed[(e.conversation_id, e.change_seq)] = message.to_dict()
    if touched or entries:
        await store.apply_changes(list(touched.values()), entries)
    for e in events:
        if isinstance(e, ChangeAcknowledged) and (e.conversation_id, e.seq) in current:
            outcome.current[(e.conversation_id, e.seq)] = current[(e.conversation_id, e.seq)].to_dict()
    return outcome


async def project_search(index: SearchIndex, events: Sequence[Event]) -> None:
    """The search index follows the timeline: new messages are added, an edit replaces what a
    message is found by, a deletion erases it from the index (in log order: add before change)."""
    docs = [SearchDoc(e.conversation_id, e.seq, e.sender_id, e.body, e.sent_at)
            for e in events if isinstance(e, MessageAccepted)]
    if docs:
        await index.add(docs)
    for e in events:
        if isinstance(e, MessageEdited):
            await index.replace(e.conversation_id, e.seq, e.body)
        elif isinstance(e, MessageDeleted):
            await index.remove(e.conversation_id, e.seq)
