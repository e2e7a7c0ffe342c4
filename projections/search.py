"""The search index of protocol 1.1: messages found by the words of their current body.

This module is the interface (``SearchIndex``), its value types and the pure parts every
backend shares: what a query means (``parse_query``), which words a message is indexed under,
the highlights of a hit, and a ``search`` call reduced to bounds (``search_plan``). Backends are
named after it: ``search_sqlite.py`` (FTS5) and ``search_cassandra.py``;
``make_search_index(settings)`` picks one, as ``make_timeline_store`` does.

The rules (PROTOCOL.md, "Additions in 1.1"): every word of the query must be a word of the body,
the last one may be a prefix of one (words as ``search_text`` defines them); newest first by
``sent_at``, ties by ``(conversation_id, seq)``, all descending, and a page never ends inside
a group of equal ``sent_at`` (see ``SearchPlan.finish``); never an expired, deleted or
out-of-scope message. Writes are keyed by ``(conversation_id, seq)``: an ``add`` seen twice
changes nothing, ``replace`` and ``remove`` of an unknown message do nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from projections.search_text import tokens, words
from projections.timelines import SEQ_CEILING, current_ms

if TYPE_CHECKING:
    from chat.settings import Settings

DEFAULT_LIMIT = 20
MAX_LIMIT = 50  # larger limits are clamped to it


@dataclass(frozen=True, slots=True)
class SearchDoc:
    """A message as the index takes it."""

    conversation_id: str
    seq: int
    sender_id: str
    body: str
    sent_at: int  # ms since the epoch


@dataclass(frozen=True, slots=True)
class SearchHit:
    """A message found: its current body, and ``[start, end)`` code point ranges into it."""

    conversation_id: str
    seq: int
    body: str
    sent_at: int
    highlights: list[tuple[int, int]] = field(default_factory=list)

    @property
    def key(self) -> tuple[int, str, int]:
        return (self.sent_at, self.conversation_id, self.seq)


@dataclass(frozen=True)
class SearchPage:
    """Hits newest first; ``has_more`` says whether older ones exist."""

    results: list[SearchHit]
    has_more: bool


class SearchIndex(Protocol):
    """What every search backend provides (see the contract tests)."""

    async def open(self) -> None:
        """Connect, and create the schema if it is missing."""

    async def close(self) -> None:
        """Release connections and threads; the index cannot be used afterwards."""

    async def ping(self) -> None:
        """Return if the backend answers; raise ``OperationalError`` otherwise."""

    async def add(self, docs: Sequence[SearchDoc]) -> None:
        """Index messages; a ``(conversation_id, seq)`` already indexed is left as it is."""

    async def replace(self, conversation_id: str, seq: int, body: str) -> None:
        """The message was edited: from now on it is found by ``body`` only."""

    async def remove(self, conversation_id: str, seq: int) -> None:
        """The message was deleted: its body and its words are erased from the index."""

    async def clear(self) -> None:
        """Erase every message from the index (``chat rebuild search`` starts from nothing)."""

    async def count(self) -> int:
        """How many messages the index holds."""

    async def search(
        self,
        scopes: Mapping[str, int | None],
        q: str,
        *,
        before: int | None = None,
        limit: int = DEFAULT_LIMIT,
        now_ms: int | None = None,
    ) -> SearchPage:
        """Messages matching ``q`` in the conversations of ``scopes``, newest first.

        ``scopes`` maps a conversation to the highest seq the caller may see there (None: all).
        ``before`` is an exclusive ``sent_at``; ``limit`` is clamped to ``MAX_LIMIT``. A ``q``
        without a word finds nothing.
        """

    async def sweep(self, now_ms: int | None = None) -> int:
        """Erase expired messages and return how many (0 where TTLs do it)."""


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed ``q``: whole words that must all be present, and the last word, a prefix."""

    whole: tuple[str, ...]
    prefix: str

    def matches(self, body_words: Iterable[str]) -> bool:
        present = set(body_words)
        return all(w in present for w in self.whole) and any(w.startswith(self.prefix) for w in present)


def parse_query(q: str) -> Query | None:
    """The query's words (None when it has none): all but the last whole, the last a prefix."""
    found = words(q)
    if not found:
        return None
    return Query(whole=tuple(dict.fromkeys(found[:-1])), prefix=found[-1])


def index_words(body: str) -> list[str]:
    """The distinct words a body is indexed under, in order of first appearance."""
    return list(dict.fromkeys(words(body)))


def highlights(body: str, query: Query) -> list[tuple[int, int]]:
    """``[start, end)`` code point ranges of ``body`` to highlight: every occurrence of a whole
    word of the query, and the prefix part of every word that starts with the last; overlaps
    merged, in order."""
    spans = []
    for token in tokens(body):
        if token.text in query.whole:
            spans.append((token.start, token.end))
        elif token.text.startswith(query.prefix):
            spans.append((token.start, token.prefix_end(len(query.prefix))))
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


@dataclass(frozen=True, slots=True)
class SearchPlan:
    """A ``search`` call reduced to what a backend runs: the query, each conversation's highest
    visible seq, ``sent_after < sent_at < sent_before``, and ``limit``."""

    query: Query
    scopes: dict[str, int]
    sent_after: int
    sent_before: int
    limit: int

    @property
    def fetch(self) -> int:
        return self.limit + 1

    def allows(self, conversation_id: str, seq: int) -> bool:
        highest = self.scopes.get(conversation_id)
        return highest is not None and seq <= highest

    def hit(self, conversation_id: str, seq: int, body: str, sent_at: int) -> SearchHit | None:
        """The hit for a stored message, or None if it is out of scope, out of the time bounds,
        or does not match (backends may fetch candidates that turn out not to)."""
        if not (self.allows(conversation_id, seq) and self.sent_after < sent_at < self.sent_before):
            return None
        if not self.query.matches(words(body)):
            return None
        return SearchHit(conversation_id, seq, body, sent_at, highlights(body, self.query))

    def finish(self, hits: Iterable[SearchHit]) -> SearchPage:
        """The page from hits that hold at least the newest ``fetch`` ones and every hit with
        the same ``sent_at`` as the last of those (in any order).

        ``before`` is a ``sent_at``, so a page that ended inside a group of equal ``sent_at``
        would lose the rest of the group to the next page: such a page ends before the group
        instead (shorter than ``limit``), unless the group alone fills it.
        """
        ordered = sorted(hits, key=lambda h: h.key, reverse=True)
        page = ordered[: self.limit]
        if len(ordered) > self.limit and page[-1].sent_at == ordered[self.limit].sent_at:
            whole_groups = [h for h in page if h.sent_at != page[-1].sent_at]
            page = whole_groups or page
        return SearchPage(results=page, has_more=len(ordered) > len(page))


def search_plan(
    scopes: Mapping[str, int | None],
    q: str,
    *,
    before: int | None,
    limit: int,
    now_ms: int | None,
    retention_ms: int,
) -> SearchPlan | None:
    """Validate a ``search`` call; None when it can find nothing (no word, no scope)."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    query = parse_query(q)
    if query is None or not scopes:
        return None
    now = current_ms() if now_ms is None else now_ms
    return SearchPlan(
        query=query,
        scopes={c: SEQ_CEILING if s is None else s for c, s in scopes.items()},
        # Expired means sent_at + retention_ms <= now, so visible means this:
        sent_after=now - retention_ms,
        sent_before=SEQ_CEILING if before is None else before,
        limit=min(limit, MAX_LIMIT),
    )


def search_sqlite_path(timeline_path: Path) -> Path:
    """The search index's SQLite file: beside the timeline store's, its own file, so that
    neither projection waits for the other's write lock."""
    return timeline_path.with_name(f"{timeline_path.stem}-search{timeline_path.suffix or '.sqlite3'}")


def make_search_index(settings: Settings) -> SearchIndex:
    """The backend named by ``settings.timeline_backend`` (not opened yet)."""
    backend = settings.timeline_backend
    if backend == "sqlite":
        from projections.search_sqlite import SqliteSearchIndex

        return SqliteSearchIndex(search_sqlite_path(settings.resolved_sqlite_path), settings.retention_ms)
    if backend == "cassandra":
        from projections.search_cassandra import CassandraSearchIndex

        from chat.secure import cassandra_options

        return CassandraSearchIndex(
            settings.cassandra_host_list,
            settings.cassandra_keyspace,
            settings.retention_ms,
            replication_factor=settings.cassandra_replicas,
            cluster_options=cassandra_options(settings),
        )
    raise ValueError(f"unknown timeline_backend {backend!r} (expected 'sqlite' or 'cassandra')")
