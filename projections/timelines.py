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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from chat.settings import Settings

# Open bounds for a seq range: seqs are positive 64-bit integers.
SEQ_FLOOR = -1
SEQ_CEILING = 2**63 - 1


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
        }


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

        return CassandraTimelineStore(
            settings.cassandra_host_list,
            settings.cassandra_keyspace,
            settings.retention_ms,
            replication_factor=settings.replication_factor,
        )
    raise ValueError(f"unknown timeline_backend {backend!r} (expected 'sqlite' or 'cassandra')")
