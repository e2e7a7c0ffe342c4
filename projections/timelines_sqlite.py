"""The embedded timeline backend: one SQLite file, shared by several processes.

One worker process writes and gateway processes read the same file. WAL mode
lets readers go on while a writer commits; writers take the write lock up front
(``BEGIN IMMEDIATE``) so that ``busy_timeout`` applies instead of a lock-upgrade
deadlock. Each store owns one connection, used only by its one worker thread, so
the blocking sqlite calls stay off the event loop.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from projections.sqlite_file import SqliteFile, in_transaction as _in_transaction
from projections.timelines import (
    ChangePage, Page, StoredChange, TimelineMessage, current_ms, page_query, reply_preview,
)


# Sweep deletes in chunks, one transaction each, so that it never holds the
# write lock for long while the worker is appending.
SWEEP_CHUNK = 5000

_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS messages (
        conversation_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        message_id TEXT NOT NULL,
        sender_id TEXT NOT NULL,
        client_msg_id TEXT NOT NULL,
        body TEXT NOT NULL,
        media TEXT,  -- JSON object, or NULL
        sent_at INTEGER NOT NULL,  -- ms since the epoch
        expires_at INTEGER NOT NULL,  -- sent_at + retention, for the sweep
        PRIMARY KEY (conversation_id, seq)
    ) WITHOUT ROWID
    """,
    "CREATE INDEX IF NOT EXISTS messages_expires_at ON messages (expires_at)",
    """
    CREATE TABLE IF NOT EXISTS changes (
        conversation_id TEXT NOT NULL,
        change_seq INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        change TEXT NOT NULL,  -- edit | delete | reaction
        by_user TEXT NOT NULL,
        changed_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,  -- the message's
        PRIMARY KEY (conversation_id, change_seq)
    ) WITHOUT ROWID
    """,
    "CREATE INDEX IF NOT EXISTS changes_expires_at ON changes (expires_at)",
)
# Protocol 1.1 columns, added to a table made by an earlier version (ALTER TABLE ADD COLUMN).
_ADDED_COLUMNS = (
    ("reply_to", "INTEGER"),  # the replied-to seq, or NULL
    ("reply_sender", "TEXT"),
    ("mentions", "TEXT"),  # JSON list, or NULL for none
    ("edited_at", "INTEGER"),
    ("deleted", "INTEGER NOT NULL DEFAULT 0"),
    ("reactions", "TEXT"),  # JSON list of {"emoji","user_ids"}, or NULL for none
    ("change_seq", "INTEGER NOT NULL DEFAULT 0"),
)
_COLUMNS = ("conversation_id, seq, message_id, sender_id, client_msg_id, body, media, sent_at,"
            " reply_to, reply_sender, mentions, edited_at, deleted, reactions, change_seq")
_INSERT = f"INSERT OR IGNORE INTO messages ({_COLUMNS}, expires_at) VALUES ({', '.join('?' * 16)})"
_PAGE = (
    f"SELECT {_COLUMNS} FROM messages"
    " WHERE conversation_id = ? AND seq > ? AND seq < ? AND sent_at > ?"
    " ORDER BY seq {order} LIMIT ?"
)
_PAGE_OLDEST_FIRST = _PAGE.format(order="ASC")
_PAGE_NEWEST_FIRST = _PAGE.format(order="DESC")
_LAST_SEQ = "SELECT COALESCE(MAX(seq), 0) FROM messages WHERE conversation_id = ?"
_SWEEP = (
    "DELETE FROM messages WHERE (conversation_id, seq) IN"
    " (SELECT conversation_id, seq FROM messages WHERE expires_at <= ? LIMIT ?)"
)
_SWEEP_CHANGES = (
    "DELETE FROM changes WHERE (conversation_id, change_seq) IN"
    " (SELECT conversation_id, change_seq FROM changes WHERE expires_at <= ? LIMIT ?)"
)
_UPDATE_STATE = (
    "UPDATE messages SET body = ?, media = ?, mentions = ?, edited_at = ?, deleted = ?, reactions = ?,"
    " change_seq = ? WHERE conversation_id = ? AND seq = ? AND change_seq < ?"
)
_INSERT_CHANGE = (
    "INSERT OR IGNORE INTO changes (conversation_id, change_seq, seq, change, by_user, changed_at, expires_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_CHANGES = (
    f"SELECT c.change_seq, c.seq, c.change, c.by_user, c.changed_at, {', '.join('m.' + c.strip() for c in _COLUMNS.split(','))}"
    " FROM changes c JOIN messages m ON m.conversation_id = c.conversation_id AND m.seq = c.seq"
    " WHERE c.conversation_id = ? AND c.change_seq > ? AND m.sent_at > ? ORDER BY c.change_seq LIMIT ?"
)
_LAST_CHANGE_SEQ = "SELECT COALESCE(MAX(change_seq), 0) FROM changes WHERE conversation_id = ?"


def statements(messages: str = "messages", changes: str = "changes") -> dict[str, Any]:
    """Every statement above for tables of other names (a rebuild writes shadow tables)."""
    def rename(sql: str) -> str:
        return re.sub(r"\bchanges\b", changes, re.sub(r"\bmessages\b", messages, sql))

    named = {"insert": _INSERT, "page_oldest_first": _PAGE_OLDEST_FIRST, "page_newest_first": _PAGE_NEWEST_FIRST,
             "last_seq": _LAST_SEQ, "sweep": _SWEEP, "sweep_changes": _SWEEP_CHANGES, "update_state": _UPDATE_STATE,
             "insert_change": _INSERT_CHANGE, "changes": _CHANGES, "last_change_seq": _LAST_CHANGE_SEQ}
    out: dict[str, Any] = {name: rename(sql) for name, sql in named.items()}
    out["schema"] = tuple(rename(sql) for sql in _SCHEMA)
    out["messages"], out["changes_table"] = messages, changes
    return out


class SqliteTimelineStore(SqliteFile):
    """``TimelineStore`` on a SQLite file (see ``projections.timelines``)."""

    what = "timeline store"
    # NORMAL is durable against crashes of the process; a power cut may lose the last commits,
    # which replaying the event log restores.
    synchronous = "NORMAL"

    def __init__(self, path: str | Path, retention_ms: int, *, tables: tuple[str, str] = ("messages", "changes")) -> None:
        super().__init__(path)
        self.retention_ms = retention_ms
        self.sql = statements(*tables)

    def make_schema(self, conn: sqlite3.Connection) -> None:
        migrate(conn, self.sql)

    # Reads and writes

    async def append(self, messages: Sequence[TimelineMessage]) -> None:
        now = current_ms()
        # Already expired: never stored.
        rows = [_row(m, self.retention_ms) for m in messages if m.sent_at + self.retention_ms > now]
        if rows:
            await self._run(lambda conn: _in_transaction(conn, lambda: conn.executemany(self.sql["insert"], rows)))

    async def messages(self, conversation_id: str, seqs: Sequence[int],
                       now_ms: int | None = None) -> dict[int, TimelineMessage]:
        wanted = sorted(set(seqs))
        if not wanted:
            return {}
        visible_after = (current_ms() if now_ms is None else now_ms) - self.retention_ms

        def read(conn: sqlite3.Connection) -> list[TimelineMessage]:
            rows = _select_seqs(conn, self.sql["messages"], conversation_id, wanted)
            return _with_replies(conn, self.sql["messages"], [_message(r) for r in rows if r[7] > visible_after],
                                 visible_after)

        return {m.seq: m for m in await self._run(read)}

    async def apply_changes(self, messages: Sequence[TimelineMessage], changes: Sequence[StoredChange]) -> None:
        updates = [(m.body, _json(m.media), _json(m.mentions or None), m.edited_at, int(m.deleted),
                    _json(m.reactions or None), m.change_seq, m.conversation_id, m.seq, m.change_seq)
                   for m in messages]
        entries = [(c.conversation_id, c.change_seq, c.seq, c.change, c.by, c.changed_at,
                    c.sent_at + self.retention_ms) for c in changes]

        def write(conn: sqlite3.Connection) -> None:
            conn.executemany(self.sql["update_state"], updates)
            conn.executemany(self.sql["insert_change"], entries)

        if updates or entries:
            await self._run(lambda conn: _in_transaction(conn, lambda: write(conn)))

    async def changes(self, conversation_id: str, *, after_change_seq: int = 0, limit: int = 50,
                      now_ms: int | None = None) -> ChangePage:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        visible_after = (current_ms() if now_ms is None else now_ms) - self.retention_ms

        def read(conn: sqlite3.Connection) -> list[tuple[StoredChange, TimelineMessage]]:
            rows = conn.execute(self.sql["changes"], (conversation_id, after_change_seq, visible_after, limit + 1)).fetchall()
            messages = _with_replies(conn, self.sql["messages"], [_message(r[5:]) for r in rows], visible_after)
            return [(StoredChange(conversation_id, r[0], r[1], r[2], r[3], r[4], m.sent_at), m)
                    for r, m in zip(rows, messages)]

        entries = await self._run(read)
        return ChangePage(changes=entries[:limit], has_more=len(entries) > limit)

    async def last_change_seq(self, conversation_id: str) -> int:
        row = await self._run(lambda conn: conn.execute(self.sql["last_change_seq"], (conversation_id,)).fetchone())
        return int(row[0])

    async def page(
        self,
        conversation_id: str,
        *,
        before_seq: int | None = None,
        after_seq: int | None = None,
        limit: int = 50,
        now_ms: int | None = None,
    ) -> Page:
        q = page_query(
            before_seq=before_seq, after_seq=after_seq, limit=limit, now_ms=now_ms, retention_ms=self.retention_ms
        )
        sql = self.sql["page_newest_first" if q.newest_first else "page_oldest_first"]
        params = (conversation_id, q.lower, q.upper, q.sent_after, q.fetch)

        def read(conn: sqlite3.Connection) -> list[TimelineMessage]:
            rows = conn.execute(sql, params).fetchall()
            return _with_replies(conn, self.sql["messages"], [_message(row) for row in rows], q.sent_after)

        return q.finish(await self._run(read))

    async def last_seq(self, conversation_id: str) -> int:
        row = await self._run(lambda conn: conn.execute(self.sql["last_seq"], (conversation_id,)).fetchone())
        return int(row[0])

    async def sweep(self, now_ms: int | None = None) -> int:
        now = current_ms() if now_ms is None else now_ms

        def sweep(conn: sqlite3.Connection) -> int:
            total = 0
            while True:
                deleted = _in_transaction(conn, lambda: conn.execute(self.sql["sweep"], (now, SWEEP_CHUNK)).rowcount)
                total += deleted
                if deleted < SWEEP_CHUNK:
                    break
            while _in_transaction(conn, lambda: conn.execute(self.sql["sweep_changes"], (now, SWEEP_CHUNK)).rowcount) == SWEEP_CHUNK:
                pass
            return total

        return await self._run(sweep)


def migrate(conn: sqlite3.Connection, sql: dict[str, Any] | None = None) -> None:
    """Create the schema, or bring a table of an earlier version up to this one."""
    sql = sql or statements()
    for stmt in sql["schema"]:
        conn.execute(stmt)
    table = sql["messages"]
    have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
    for name, kind in _ADDED_COLUMNS:
        if name not in have:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _row(m: TimelineMessage, retention_ms: int) -> tuple[Any, ...]:
    reply = m.reply_to
    return (m.conversation_id, m.seq, m.message_id, m.sender_id, m.client_msg_id, m.body, _json(m.media), m.sent_at,
            None if reply is None else reply["seq"], None if reply is None else reply["sender_id"],
            _json(m.mentions or None), m.edited_at, int(m.deleted), _json(m.reactions or None), m.change_seq,
            m.sent_at + retention_ms)


def _message(row: Sequence[Any]) -> TimelineMessage:
    (conversation_id, seq, message_id, sender_id, client_msg_id, body, media, sent_at,
     reply_to, reply_sender, mentions, edited_at, deleted, reactions, change_seq) = row
    return TimelineMessage(
        conversation_id=conversation_id,
        seq=seq,
        message_id=message_id,
        sender_id=sender_id,
        client_msg_id=client_msg_id,
        body=body,
        media=None if media is None else json.loads(media),
        sent_at=sent_at,
        # The preview's body is filled in by _with_replies.
        reply_to=None if reply_to is None else {"seq": reply_to, "sender_id": reply_sender, "body": ""},
        mentions=json.loads(mentions) if mentions else [],
        edited_at=edited_at,
        deleted=bool(deleted),
        reactions=json.loads(reactions) if reactions else [],
        change_seq=change_seq,
    )


def _select_seqs(conn: sqlite3.Connection, table: str, conversation_id: str, seqs: Sequence[int]) -> list[Any]:
    rows: list[Any] = []
    for start in range(0, len(seqs), 500):  # under SQLite's bound-variable limit
        chunk = seqs[start:start + 500]
        rows += conn.execute(f"SELECT {_COLUMNS} FROM {table} WHERE conversation_id = ? AND seq IN"
                             f" ({', '.join('?' * len(chunk))})", (conversation_id, *chunk)).fetchall()
    return rows


def _with_replies(conn: sqlite3.Connection, table: str, messages: list[TimelineMessage],
                  visible_after: int) -> list[TimelineMessage]:
    """Fill in each reply's preview from the replied-to message as it is now."""
    wanted: dict[str, set[int]] = {}
    for m in messages:
        if m.reply_to is not None:
            wanted.setdefault(m.conversation_id, set()).add(m.reply_to["seq"])
    if not wanted:
        return messages
    found: dict[tuple[str, int], TimelineMessage] = {}
    for conversation_id, seqs in wanted.items():
        for row in _select_seqs(conn, table, conversation_id, sorted(seqs)):
            if row[7] > visible_after:
                found[(conversation_id, row[1])] = _message(row)
    return [m if m.reply_to is None else replace(m, reply_to=reply_preview(
        m.reply_to["seq"], m.reply_to["sender_id"], found.get((m.conversation_id, m.reply_to["seq"]))))
        for m in messages]
