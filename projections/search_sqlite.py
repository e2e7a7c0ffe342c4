"""The embedded search backend: SQLite FTS5, in a file of its own beside the timeline store's.

``search_docs`` holds each message (its body, for the hits and their highlights); its integer
key ``id`` is ``sent_at << 16 | slot`` and is also the message's rowid in the FTS5 table
``search_words``, so the index can be walked newest first by rowid and a ``before`` or the
retention bound is a rowid range. The FTS5 table is contentless and holds the words that
``search_text`` makes (normalised, space-separated; the ``ascii`` tokenizer keeps every
non-ASCII character as part of a word, so it splits exactly there) and one term for the
conversation, ``§`` and the id in hex, which a small scope puts into the query itself.

Erasure: FTS5's ``secure-delete`` removes a deleted row's entries from the index at once
(instead of a delete marker merged away later; ``search_docs.words`` keeps the exact text to
delete) and ``PRAGMA secure_delete`` overwrites freed content; both need SQLite 3.44 or later, which the ``pysqlite3-binary`` wheel brings where the
system's library is older.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from chat.errors import IntegrityError, OperationalError
from projections.search import DEFAULT_LIMIT, SearchDoc, SearchHit, SearchPage, SearchPlan, index_words, search_plan
from projections.timelines import current_ms
from projections.sqlite_file import SqliteFile, in_transaction as _in_transaction

try:  # SQLite 3.44+ bundled; the system's sqlite3 module is used where it is recent enough
    from pysqlite3 import dbapi2 as sqlite3
except ImportError:  # pragma: no cover
    import sqlite3  # type: ignore[no-redef]


MIN_SQLITE = (3, 44, 0)  # FTS5 secure-delete
SLOT_BITS = 16  # messages with the same sent_at, at most 65,536
MAX_SENT_AT = 2**46  # ms, about the year 4200: keeps ids below 2**62
SWEEP_CHUNK = 2000
CANDIDATE_BATCH = 256  # rowids read from the FTS index at a time
# Scopes up to this many conversations are put into the FTS query; larger ones are filtered
# while walking the matches, which is cheaper than an OR of that many terms (bench/RESULTS.md).
SCOPE_TERMS_MAX = 100

_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS search_docs (
        id INTEGER PRIMARY KEY,  -- sent_at << 16 | slot, the rowid in search_words
        conversation_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        sender_id TEXT NOT NULL,
        body TEXT NOT NULL,
        words TEXT NOT NULL,  -- exactly what search_words holds for it ('' for none)
        sent_at INTEGER NOT NULL,
        UNIQUE (conversation_id, seq)
    )
    """,
    # prefix: the words' first 1, 2 and 3 characters are terms too, so a short last word reads
    # one list instead of merging those of every word it begins.
    "CREATE VIRTUAL TABLE IF NOT EXISTS search_words USING fts5("
    " words, content='', tokenize='ascii', detail=none, prefix='1 2 3')",
    "INSERT INTO search_words (search_words, rank) VALUES ('secure-delete', 1)",
    # The terms the index holds and in how many rows (for operators, and the erasure tests).
    "CREATE VIRTUAL TABLE IF NOT EXISTS search_vocab USING fts5vocab(search_words, 'row')",
)
_FIND = "SELECT id, body, words FROM search_docs WHERE conversation_id = ? AND seq = ?"
_LAST_SLOT = "SELECT MAX(id) FROM search_docs WHERE id BETWEEN ? AND ?"
_INSERT_DOC = (
    "INSERT INTO search_docs (id, conversation_id, seq, sender_id, body, words, sent_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_WORDS = "INSERT INTO search_words (rowid, words) VALUES (?, ?)"
# A contentless table is told what to delete. With secure-delete on, the entries leave the
# index's pages at once; a contentless_delete=1 table would keep them until a merge.
_DELETE_WORDS = "INSERT INTO search_words (search_words, rowid, words) VALUES ('delete', ?, ?)"
_MATCHES = (
    "SELECT rowid FROM search_words WHERE search_words MATCH ? AND rowid >= ? AND rowid < ? ORDER BY rowid DESC"
)


class SqliteSearchIndex(SqliteFile):
    """``SearchIndex`` on SQLite FTS5 (see ``projections.search``)."""

    what = "search index"
    synchronous = "NORMAL"  # as the timeline store: replaying the log restores the last commits
    sqlite = sqlite3  # pysqlite3 where the system's SQLite is older than MIN_SQLITE

    def __init__(self, path: str | Path, retention_ms: int) -> None:
        super().__init__(path)
        self.retention_ms = retention_ms

    def make_schema(self, conn: Any) -> None:
        for stmt in _SCHEMA:
            conn.execute(stmt)

    def _connect(self) -> None:
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise OperationalError(f"search needs SQLite {MIN_SQLITE} or later, not {sqlite3.sqlite_version}")
        super()._connect()

    # Writes

    async def add(self, docs: Sequence[SearchDoc]) -> None:
        now = current_ms()
        fresh: dict[tuple[str, int], SearchDoc] = {}
        for d in docs:  # the first of a batch wins; expired ones are never stored
            if d.sent_at + self.retention_ms > now:
                fresh.setdefault((d.conversation_id, d.seq), d)
        if fresh:
            await self._run(lambda conn: _in_transaction(conn, lambda: _add(conn, fresh.values())))

    async def replace(self, conversation_id: str, seq: int, body: str) -> None:
        def replace(conn: Any) -> None:
            found = conn.execute(_FIND, (conversation_id, seq)).fetchone()
            if found is None or found[1] == body:
                return
            doc_id, _, old_words = found
            _unindex(conn, doc_id, old_words)
            new_words = _index_words(conn, doc_id, conversation_id, body)
            conn.execute("UPDATE search_docs SET body = ?, words = ? WHERE id = ?", (body, new_words, doc_id))

        await self._run(lambda conn: _in_transaction(conn, lambda: replace(conn)))

    async def remove(self, conversation_id: str, seq: int) -> None:
        def remove(conn: Any) -> None:
            found = conn.execute(_FIND, (conversation_id, seq)).fetchone()
            if found is not None:
                _unindex(conn, found[0], found[2])
                conn.execute("DELETE FROM search_docs WHERE id = ?", (found[0],))

        await self._run(lambda conn: _in_transaction(conn, lambda: remove(conn)))

    async def clear(self) -> None:
        def clear(conn: Any) -> None:
            conn.execute("DELETE FROM search_docs")
            conn.execute("INSERT INTO search_words (search_words) VALUES ('delete-all')")

        await self._run(lambda conn: _in_transaction(conn, lambda: clear(conn)))

    async def count(self) -> int:
        return await self._run(lambda conn: conn.execute("SELECT COUNT(*) FROM search_docs").fetchone()[0])

    async def sweep(self, now_ms: int | None = None) -> int:
        now = current_ms() if now_ms is None else now_ms
        # Expired: sent_at + retention <= now, so every id below this one.
        bound = _id_floor(now - self.retention_ms + 1)

        def sweep_chunk(conn: Any) -> int:
            rows = conn.execute("SELECT id, words FROM search_docs WHERE id < ? LIMIT ?", (bound, SWEEP_CHUNK)).fetchall()
            for doc_id, words in rows:
                _unindex(conn, doc_id, words)
            conn.executemany("DELETE FROM search_docs WHERE id = ?", [(doc_id,) for doc_id, _ in rows])
            return len(rows)

        def sweep(conn: Any) -> int:
            total = 0
            while True:
                deleted = _in_transaction(conn, lambda: sweep_chunk(conn))
                total += deleted
                if deleted < SWEEP_CHUNK:
                    return total

        return await self._run(sweep)

    # Reads

    async def search(
        self,
        scopes: Mapping[str, int | None],
        q: str,
        *,
        before: int | None = None,
        limit: int = DEFAULT_LIMIT,
        now_ms: int | None = None,
    ) -> SearchPage:
        plan = search_plan(scopes, q, before=before, limit=limit, now_ms=now_ms, retention_ms=self.retention_ms)
        if plan is None:
            return SearchPage([], False)
        return await self._run(lambda conn: _search(conn, plan))


def _add(conn: Any, docs: Any) -> None:
    for d in docs:
        if conn.execute(_FIND, (d.conversation_id, d.seq)).fetchone() is not None:
            continue  # first write wins
        base = _id_floor(d.sent_at)
        last = conn.execute(_LAST_SLOT, (base, base + (1 << SLOT_BITS) - 1)).fetchone()[0]
        doc_id = base if last is None else last + 1
        if doc_id >> SLOT_BITS != d.sent_at:
            raise IntegrityError(f"more than {1 << SLOT_BITS} messages sent at {d.sent_at}")
        words = _index_words(conn, doc_id, d.conversation_id, d.body)
        conn.execute(_INSERT_DOC, (doc_id, d.conversation_id, d.seq, d.sender_id, d.body, words, d.sent_at))


def _index_words(conn: Any, doc_id: int, conversation_id: str, body: str) -> str:
    """Write the FTS row of a message and return its text; none, and '', for a body without
    words (it is never found)."""
    found = index_words(body)
    if not found:
        return ""
    words = f"{' '.join(found)} {_scope_term(conversation_id)}"
    conn.execute(_INSERT_WORDS, (doc_id, words))
    return words


def _unindex(conn: Any, doc_id: int, words: str) -> None:
    if words:
        conn.execute(_DELETE_WORDS, (doc_id, words))


def _search(conn: Any, plan: SearchPlan) -> SearchPage:
    """Walk the matches newest first until ``plan.fetch`` hits and every tie of the last."""
    terms = [f'"{w}"' for w in plan.query.whole] + [f'"{plan.query.prefix}"*']
    if len(plan.scopes) <= SCOPE_TERMS_MAX:
        terms.append("(" + " OR ".join(f'"{_scope_term(c)}"' for c in plan.scopes) + ")")
    low = _id_floor(max(plan.sent_after + 1, 0))
    high = _id_floor(min(plan.sent_before, MAX_SENT_AT))
    matches = conn.execute(_MATCHES, (" AND ".join(terms), low, high))
    try:
        return plan.finish(_walk(conn, plan, matches))
    finally:
        matches.close()


def _walk(conn: Any, plan: SearchPlan, matches: Any) -> list[SearchHit]:
    hits: list[SearchHit] = []
    boundary: int | None = None  # sent_at of the fetch-th hit: read on through its ties
    while ids := [row[0] for row in matches.fetchmany(CANDIDATE_BATCH)]:
        marks = ",".join("?" * len(ids))
        rows = conn.execute(
            f"SELECT conversation_id, seq, body, sent_at FROM search_docs WHERE id IN ({marks}) ORDER BY id DESC", ids
        ).fetchall()
        for conversation_id, seq, body, sent_at in rows:
            if boundary is not None and sent_at < boundary:
                return hits
            hit = plan.hit(conversation_id, seq, body, sent_at)
            if hit is not None:
                hits.append(hit)
                if boundary is None and len(hits) == plan.fetch:
                    boundary = sent_at
    return hits


def _scope_term(conversation_id: str) -> str:
    """The FTS term of a conversation: no word has a ``§``, so it never matches one."""
    return "§" + conversation_id.encode().hex()


def _id_floor(sent_at: int) -> int:
    return sent_at << SLOT_BITS
