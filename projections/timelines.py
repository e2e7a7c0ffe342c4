"""The timeline store: every conversation's messages, ordered by ``seq``.

This module is the interface (``TimelineStore``) and the value types it speaks.
Backends are named after it: ``timelines_sqlite.py`` (embedded, one machine) and
``timelines_cassandra.py``. ``make_timeline_store(settings)`` picks one.

Writes are keyed by ``(conversation_id, seq)``, which the sequencer assigns once
per message, so applying an event twice changes nothing (first write wins).
Messages older than the retention period are never returned.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from chat.events import CHANGE_NAMES, MessageChange, MessageDeleted, MessageEdited, change_time

if TYPE_CHECKING:
    from chat.settings import Settings

# Open bounds for a seq range: seqs are positive 64-bit integers.
SEQ_FLOOR = -1
SEQ_CEILING = 2**63 - 1
PREVIEW_CHARS = 200  # a reply shows the start of the message it replies to


@dataclass(frozen=True, slots=True)
class TimelineMessage:
    """One stored message, exactly as the protocol shows it."""

    conversation_id: str
    seq: int
    message_id: str
    sender_id: str
    client_msg_id: str
    body: str
    media: dict[str, Any] | None
    sent_at: int  # ms since the epoch
    # Protocol 1.1. reply_to: {"seq", "sender_id", "body"} as read (the replied-to message's
    # body as it is now, cut to PREVIEW_CHARS; "" once deleted or expired); written: its seq and
    # sender only. reactions: [{"emoji", "user_ids"}] in order of each emoji's first reaction.
    reply_to: dict[str, Any] | None = None
    mentions: list[str] = field(default_factory=list)
    edited_at: int | None = None
    deleted: bool = False
    reactions: list[dict[str, Any]] = field(default_factory=list)
    change_seq: int = 0  # the last change applied (not shown: changes are idempotent by it)

    def to_dict(self) -> dict[str, Any]:
        """The protocol's message object."""
        return {
            "conversation_id": self.conversation_id,
            "seq": self.seq,
            "message_id": self.message_id,
            "sender_id": self.sender_id,
            "client_msg_id": self.client_msg_id,
            "body": self.body,
            "media": self.media,
            "sent_at": self.sent_at,
            "reply_to": self.reply_to,
            "mentions": self.mentions,
            "edited_at": self.edited_at,
            "deleted": self.deleted,
            "reactions": self.reactions,
        }


@dataclass(frozen=True, slots=True)
class StoredChange:
    """One entry of a conversation's change log: which message changed, how, by whom."""

    conversation_id: str
    change_seq: int
    seq: int
    change: str  # "edit" | "delete" | "reaction"
    by: str
    changed_at: int
    sent_at: int  # the message's: the entry expires with it


@dataclass(frozen=True)
class ChangePage:
    """Change log entries in ascending change_seq, each with its message as it is now."""

    changes: list[tuple[StoredChange, TimelineMessage]]
    has_more: bool


def apply_change(m: TimelineMessage, event: MessageChange) -> TimelineMessage:
    """A message after a change; a change already applied (by change_seq) changes nothing."""
    if event.change_seq <= m.change_seq:
        return m
    if isinstance(event, MessageEdited):
        return replace(m, body=event.body, edited_at=event.edited_at, change_seq=event.change_seq)
    if isinstance(event, MessageDeleted):
        # Erased: the body, the media, who was mentioned and who reacted. The place stays.
        return replace(m, body="", media=None, mentions=[], reactions=[], deleted=True, change_seq=event.change_seq)
    reactions = [{"emoji": r["emoji"], "user_ids": list(r["user_ids"])} for r in m.reactions]
    entry = next((r for r in reactions if r["emoji"] == event.emoji), None)
    if event.on:
        if entry is None:
            reactions.append({"emoji": event.emoji, "user_ids": [event.user_id]})
        elif event.user_id not in entry["user_ids"]:
            entry["user_ids"].append(event.user_id)
    elif entry is not None and event.user_id in entry["user_ids"]:
        entry["user_ids"].remove(event.user_id)
        if not entry["user_ids"]:
            reactions.remove(entry)
    return replace(m, reactions=reactions, change_seq=event.change_seq)


def stored_change(event: MessageChange, m: TimelineMessage) -> StoredChange:
    return StoredChange(event.conversation_id, event.change_seq, event.seq, CHANGE_NAMES[type(event)],
                        event.user_id, change_time(event), m.sent_at)


def reply_preview(reply_seq: int, reply_sender: str, replied: "TimelineMessage | None") -> dict[str, Any]:
    """The reply_to object: the replied-to message's body as it is now ("" once gone)."""
    body = "" if replied is None or replied.deleted else replied.body[:PREVIEW_CHARS]
    return {"seq": reply_seq, "sender_id": reply_sender, "body": body}


@dataclass(frozen=True)
class Page:
    """Messages in ascending seq; ``has_more`` says whether the walk can go on."""

    messages: list[TimelineMessage]
    has_more: bool


class TimelineStore(Protocol):
    """What every timeline backend provides (see the contract tests)."""

    async def open(self) -> None:
        """Connect, and create the schema if it is missing."""

    async def close(self) -> None:
        """Release connections and threads; the store cannot be used afterwards."""

    async def ping(self) -> None:
        """Return if the backend answers; raise ``OperationalError`` otherwise."""

    async def append(self, messages: Sequence[TimelineMessage]) -> None:
        """Store messages; a ``(conversation_id, seq)`` already stored is left as it is.

        The batch goes in one round trip or transaction where the backend allows.
        """

    async def page(
        self,
        conversation_id: str,
        *,
        before_seq: int | None = None,
        after_seq: int | None = None,
        limit: int = 50,
        now_ms: int | None = None,
    ) -> Page:
        """One page of a conversation, in ascending seq.

        With ``after_seq``: the first ``limit`` messages after it (and before
        ``before_seq`` if given); ``has_more`` means later ones exist. Otherwise:
        the newest ``limit`` messages before ``before_seq`` (or overall);
        ``has_more`` means older ones exist. Expired messages are neither
        returned nor counted.
        """

    async def last_seq(self, conversation_id: str) -> int:
        """The highest stored seq of a conversation, 0 when it has none."""

    async def sweep(self, now_ms: int | None = None) -> int:
        """Delete expired messages and return how many (0 where TTLs do it)."""

    async def messages(self, conversation_id: str, seqs: Sequence[int],
                       now_ms: int | None = None) -> dict[int, TimelineMessage]:
        """The stored, unexpired messages among ``seqs``, as they are now, by seq."""

    async def apply_changes(self, messages: Sequence[TimelineMessage], changes: Sequence[StoredChange]) -> None:
        """Write the changeable state (body, media, mentions, edited_at, deleted, reactions,
        change_seq) of stored messages, and add entries to the change log (first write wins)."""

    async def changes(self, conversation_id: str, *, after_change_seq: int = 0, limit: int = 50,
                      now_ms: int | None = None) -> ChangePage:
        """The change log after ``after_change_seq``, ascending; entries of expired messages are
        neither returned nor counted."""

    async def last_change_seq(self, conversation_id: str) -> int:
        """The highest change_seq in a conversation's change log, 0 when it has none."""


@dataclass(frozen=True, slots=True)
class PageQuery:
    """A ``page`` call reduced to what a backend runs: one range, one direction.

    The backend fetches up to ``fetch`` rows (one more than the page) with
    ``lower < seq < upper`` and ``sent_at > sent_after``, newest first when
    ``newest_first``; ``finish`` turns them into a ``Page``.
    """

    lower: int
    upper: int
    newest_first: bool
    limit: int
    sent_after: int

    @property
    def fetch(self) -> int:
        return self.limit + 1

    def finish(self, rows: list[TimelineMessage]) -> Page:
        has_more = len(rows) > self.limit
        rows = rows[: self.limit]
        if self.newest_first:
            rows.reverse()
        return Page(messages=rows, has_more=has_more)


def page_query(
    *,
    before_seq: int | None,
    after_seq: int | None,
    limit: int,
    now_ms: int | None,
    retention_ms: int,
) -> PageQuery:
    """Validate a ``page`` call's arguments and reduce them to a ``PageQuery``."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    now = current_ms() if now_ms is None else now_ms
    return PageQuery(
        lower=SEQ_FLOOR if after_seq is None else after_seq,
        upper=SEQ_CEILING if before_seq is None else before_seq,
        newest_first=after_seq is None,
        limit=limit,
        # Expired means sent_at + retention_ms <= now, so visible means this:
        sent_after=now - retention_ms,
    )


def current_ms() -> int:
    """Wall-clock time in ms since the epoch (the unit of ``sent_at``)."""
    return time.time_ns() // 1_000_000


def make_timeline_store(settings: Settings) -> TimelineStore:
    """The backend named by ``settings.timeline_backend`` (not opened yet)."""
    backend = settings.timeline_backend
    # Imported here so that a process only loads the driver it uses.
    if backend == "sqlite":
        from projections.timelines_sqlite import SqliteTimelineStore

        return SqliteTimelineStore(settings.resolved_sqlite_path, settings.retention_ms)
    if backend == "cassandra":
        from projections.timelines_cassandra import CassandraTimelineStore

        from chat.secure import cassandra_options

        return CassandraTimelineStore(
            settings.cassandra_host_list,
            settings.cassandra_keyspace,
            settings.retention_ms,
            replication_factor=settings.cassandra_replicas,
            cluster_options=cassandra_options(settings),
        )
    raise ValueError(f"unknown timeline_backend {backend!r} (expected 'sqlite' or 'cassandra')")
