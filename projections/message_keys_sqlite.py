"""``MessageKeyStore`` on its own SQLite file (see ``projections.message_keys``).

``secure_delete`` overwrites a destroyed key in the file; the sweep also checkpoints the WAL
with TRUNCATE, so the copies of destroyed pages that the WAL still holds do not outlive it.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from chat.errors import OperationalError, PersistenceError
from chat.sealing import KeyRef, MessageKey
from projections.timelines import current_ms
from projections.timelines_sqlite import BUSY_TIMEOUT_MS, _in_transaction, set_up_wal

T = TypeVar("T")

SCHEMA = """CREATE TABLE IF NOT EXISTS message_keys (
    conversation_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    version INTEGER NOT NULL,
    key BLOB NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, seq, version)
) WITHOUT ROWID"""
EXPIRY_INDEX = "CREATE INDEX IF NOT EXISTS message_keys_expiry ON message_keys (expires_at)"


class SqliteMessageKeyStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None  # touched only on the executor's thread

    async def open(self) -> None:
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"keys-{self.path.name}")
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
            executor.shutdown(wait=False)

    async def put(self, keys: Sequence[MessageKey]) -> None:
        rows = [(k.ref.conversation_id, k.ref.seq, k.ref.version, k.key, k.expires_at) for k in keys]
        if rows:
            await self._run(lambda conn: _in_transaction(conn, lambda: conn.executemany(
                "INSERT OR REPLACE INTO message_keys VALUES (?, ?, ?, ?, ?)", rows)))

    async def get(self, refs: Sequence[KeyRef]) -> dict[KeyRef, bytes]:
        now = current_ms()

        def read(conn: sqlite3.Connection) -> dict[KeyRef, bytes]:
            found = {}
            for ref in set(refs):
                row = conn.execute("SELECT key FROM message_keys WHERE conversation_id = ? AND seq = ? AND version = ?"
                                   " AND expires_at > ?", (ref.conversation_id, ref.seq, ref.version, now)).fetchone()
                if row is not None:
                    found[ref] = row[0]
            return found

        return await self._run(read) if refs else {}

    async def destroy(self, messages: Sequence[tuple[str, int]]) -> None:
        if messages:
            await self._run(lambda conn: _in_transaction(conn, lambda: conn.executemany(
                "DELETE FROM message_keys WHERE conversation_id = ? AND seq = ?", list(messages))))

    async def sweep(self, now_ms: int | None = None) -> int:
        now = current_ms() if now_ms is None else now_ms

        def sweep(conn: sqlite3.Connection) -> int:
            gone = _in_transaction(conn, lambda: conn.execute(
                "DELETE FROM message_keys WHERE expires_at <= ?", (now,)).rowcount)
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return gone

        return await self._run(sweep)

    # On the store's thread

    def _connect(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OperationalError(f"cannot create {self.path.parent}: {exc}") from exc
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA synchronous = FULL")  # a key lost to a power cut is a body lost
            conn.execute("PRAGMA secure_delete = ON")
            set_up_wal(conn, sqlite3.OperationalError,
                       lambda: _in_transaction(conn, lambda: (conn.execute(SCHEMA), conn.execute(EXPIRY_INDEX))))
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            if self._conn is None:
                raise OperationalError(f"key store {self.path} is not open")
            return fn(self._conn)

        return await self._submit(call)

    async def _submit(self, fn: Callable[[], T], executor: ThreadPoolExecutor | None = None) -> T:
        executor = executor or self._executor
        if executor is None:
            raise OperationalError(f"key store {self.path} is not open")
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, fn)
        except sqlite3.OperationalError as exc:
            raise OperationalError(f"sqlite {self.path}: {exc}") from exc
        except sqlite3.Error as exc:
            raise PersistenceError(f"sqlite {self.path}: {exc}") from exc
