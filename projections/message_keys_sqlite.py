"""``MessageKeyStore`` on its own SQLite file (see ``projections.message_keys``).

``secure_delete`` overwrites a destroyed key in the file; the sweep also checkpoints the WAL
with TRUNCATE, so the copies of destroyed pages that the WAL still holds do not outlive it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from chat.sealing import KeyRef, MessageKey
from projections.sqlite_file import SqliteFile, in_transaction as _in_transaction
from projections.timelines import current_ms

SCHEMA = """CREATE TABLE IF NOT EXISTS message_keys (
    conversation_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    version INTEGER NOT NULL,
    key BLOB NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, seq, version)
) WITHOUT ROWID"""
EXPIRY_INDEX = "CREATE INDEX IF NOT EXISTS message_keys_expiry ON message_keys (expires_at)"


class SqliteMessageKeyStore(SqliteFile):
    what = "key store"
    synchronous = "FULL"  # a key lost to a power cut is a body lost

    def make_schema(self, conn: sqlite3.Connection) -> None:
        conn.execute(SCHEMA)
        conn.execute(EXPIRY_INDEX)

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
