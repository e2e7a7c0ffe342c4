"""The embedded timeline backend: one SQLite file, shared by several processes.

One worker process writes and gateway processes read the same file. WAL mode
lets readers go on while a writer commits; writers take the write lock up front
(``BEGIN IMMEDIATE``) so that ``busy_timeout`` applies instead of a lock-upgrade
deadlock. Each store owns one connection, used only by its one worker thread, so
the blocking sqlite calls stay off the event loop.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from chat.errors import IntegrityError, OperationalError, PersistenceError
from projections.timelines import Page, TimelineMessage, current_ms, page_query

T = TypeVar("T")

BUSY_TIMEOUT_MS = 5000
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
)
_COLUMNS = "conversation_id, seq, message_id, sender_id, client_msg_id, body, media, sent_at"
_INSERT = f"INSERT OR IGNORE INTO messages ({_COLUMNS}, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
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


class SqliteTimelineStore:
    """``TimelineStore`` on a SQLite file (see ``projections.timelines``)."""

    def __init__(self, path: str | Path, retention_ms: int) -> None:
        self.path = Path(path)
        self.retention_ms = retention_ms
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None  # touched only on the executor's thread

    # Lifecycle

    async def open(self) -> None:
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"timelines-{self.path.name}")
        try:
            await self._submit(self._connect)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        try:
            await self._submit(self._disconnect, executor)
        finally:
            executor.shutdown(wait=False)  # its one thread is idle now

    async def ping(self) -> None:
        await self._run(lambda conn: conn.execute("SELECT 1").fetchone())

    # Reads and writes

    async def append(self, messages: Sequence[TimelineMessage]) -> None:
        now = current_ms()
        # Already expired: never stored.
        rows = [_row(m, self.retention_ms) for m in messages if m.sent_at + self.retention_ms > now]
        if rows:
            await self._run(lambda conn: _in_transaction(conn, lambda: conn.executemany(_INSERT, rows)))

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
        sql = _PAGE_NEWEST_FIRST if q.newest_first else _PAGE_OLDEST_FIRST
        params = (conversation_id, q.lower, q.upper, q.sent_after, q.fetch)
        rows = await self._run(lambda conn: conn.execute(sql, params).fetchall())
        return q.finish([_message(row) for row in rows])

    async def last_seq(self, conversation_id: str) -> int:
        row = await self._run(lambda conn: conn.execute(_LAST_SEQ, (conversation_id,)).fetchone())
        return int(row[0])

    async def sweep(self, now_ms: int | None = None) -> int:
        now = current_ms() if now_ms is None else now_ms

        def sweep(conn: sqlite3.Connection) -> int:
            total = 0
            while True:
                deleted = _in_transaction(conn, lambda: conn.execute(_SWEEP, (now, SWEEP_CHUNK)).rowcount)
                total += deleted
                if deleted < SWEEP_CHUNK:
                    return total

        return await self._run(sweep)

    # On the store's thread

    def _connect(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OperationalError(f"cannot create {self.path.parent}: {exc}") from exc
        # isolation_level=None: no implicit transactions; writes use BEGIN IMMEDIATE.
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            # NORMAL is durable against crashes of the process; a power cut may
            # lose the last commits, which replaying the event log restores.
            conn.execute("PRAGMA synchronous = NORMAL")
            _in_transaction(conn, lambda: [conn.execute(stmt) for stmt in _SCHEMA])
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` on the store's thread."""

        def call() -> T:
            if self._conn is None:
                raise OperationalError(f"timeline store {self.path} is not open")
            return fn(self._conn)

        return await self._submit(call)

    async def _submit(self, fn: Callable[[], T], executor: ThreadPoolExecutor | None = None) -> T:
        """Run ``fn()`` on the store's thread, with sqlite errors translated."""
        executor = executor or self._executor
        if executor is None:
            raise OperationalError(f"timeline store {self.path} is not open")
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, fn)
        except sqlite3.OperationalError as exc:  # locked, busy, I/O, cannot open
            raise OperationalError(f"sqlite {self.path}: {exc}") from exc
        except sqlite3.IntegrityError as exc:
            raise IntegrityError(f"sqlite {self.path}: {exc}") from exc
        except sqlite3.Error as exc:
            raise PersistenceError(f"sqlite {self.path}: {exc}") from exc


def _in_transaction(conn: sqlite3.Connection, work: Callable[[], T]) -> T:
    """Run ``work`` in a write transaction taken up front, so busy_timeout applies."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = work()
    except BaseException:
        if conn.in_transaction:  # some errors have rolled back already
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


def _row(m: TimelineMessage, retention_ms: int) -> tuple[Any, ...]:
    media = None if m.media is None else json.dumps(m.media, ensure_ascii=False, separators=(",", ":"))
    expires_at = m.sent_at + retention_ms
    return (m.conversation_id, m.seq, m.message_id, m.sender_id, m.client_msg_id, m.body, media, m.sent_at, expires_at)


def _message(row: tuple[Any, ...]) -> TimelineMessage:
    conversation_id, seq, message_id, sender_id, client_msg_id, body, media, sent_at = row
    return TimelineMessage(
        conversation_id=conversation_id,
        seq=seq,
        message_id=message_id,
        sender_id=sender_id,
        client_msg_id=client_msg_id,
        body=body,
        media=None if media is None else json.loads(media),
        sent_at=sent_at,
    )
