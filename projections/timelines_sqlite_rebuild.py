"""Rebuilding the SQLite timeline beside the live one, then switching in one transaction.

The rebuild writes fresh tables ``messages_rebuild`` and ``changes_rebuild`` in the same file
(messages, and the changes of protocol 1.1 applied to them, by the projector's own code) while
the live tables keep serving. The switch takes the write lock, adds the live rows newer than
anything rebuilt (messages accepted and changes made after the rebuild's marker, which the live
projector wrote meanwhile), drops the live tables, renames the new ones and indexes them: readers
in other processes see the new tables at their next statement (SQLite re-prepares on schema
change). Changes made after the marker to messages rebuilt before it are applied again by the
rebuild's catch-up (``apply_live``; changes are idempotent by change_seq).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Sequence

from chat.errors import OperationalError
from chat.events import Event, MessageAccepted
from chat.frames import message_object
from chat.settings import Settings
from projections.timeline_projection import project_timeline
from projections.timelines import TimelineMessage
from projections.sqlite_file import BUSY_TIMEOUT_MS, in_transaction as _in_transaction
from projections.timelines_sqlite import SqliteTimelineStore

SHADOW = "messages_rebuild"
SHADOW_CHANGES = "changes_rebuild"
# Live rows sent since the rebuild began (by the expires_at index) and past the newest rebuilt
# seq of their conversation: what the live projector wrote after the marker.
_NEWER_LIVE = (
    f"INSERT OR IGNORE INTO {SHADOW} SELECT m.* FROM messages m WHERE m.expires_at >= ? AND m.seq >"
    f" (SELECT COALESCE(MAX(r.seq), 0) FROM {SHADOW} r WHERE r.conversation_id = m.conversation_id)"
)
_NEWER_LIVE_CHANGES = (
    f"INSERT OR IGNORE INTO {SHADOW_CHANGES} SELECT c.* FROM changes c WHERE c.expires_at >= ? AND c.change_seq >"
    f" (SELECT COALESCE(MAX(r.change_seq), 0) FROM {SHADOW_CHANGES} r WHERE r.conversation_id = c.conversation_id)"
)
CLOCK_SLACK_MS = 60_000  # between the clocks of the workers and of the machine running the rebuild


def timeline_messages(events: Sequence[Event]) -> list[TimelineMessage]:
    return [TimelineMessage(**message_object(e)) for e in events if isinstance(e, MessageAccepted)]


class SqliteTimelineRebuild:
    """A ``projections.rebuild.RebuildTarget`` for ``CHAT_TIMELINE_BACKEND=sqlite``."""

    name = "timelines"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.live = SqliteTimelineStore(settings.resolved_sqlite_path, settings.retention_ms)
        self.shadow = SqliteTimelineStore(settings.resolved_sqlite_path, settings.retention_ms,
                                          tables=(SHADOW, SHADOW_CHANGES))
        self._conn: sqlite3.Connection | None = None
        self._began_ms = 0

    async def open(self) -> None:
        self._began_ms = int(time.time() * 1000) - CLOCK_SLACK_MS
        await self.live.open()  # creates the file and the live schema if missing
        await asyncio.to_thread(self._open)

    def _open(self) -> None:
        conn = sqlite3.connect(self.live.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                               check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        # Same columns, in the same order, as the live tables (which open() brought up to date).
        shadows = []
        for live, shadow in (("messages", SHADOW), ("changes", SHADOW_CHANGES)):
            (sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (live,)).fetchone()
            shadows.append((shadow, sql.replace(live, shadow, 1)))
        _in_transaction(conn, lambda: [(conn.execute(f"DROP TABLE IF EXISTS {name}"), conn.execute(sql))
                                       for name, sql in shadows])
        self._conn = conn

    async def apply(self, events: Sequence[Event]) -> None:
        await self.shadow.open()
        await project_timeline(self.shadow, events)

    async def apply_live(self, events: Sequence[Event]) -> None:
        await project_timeline(self.live, events)

    async def switch(self) -> int:
        conn = self._ready()

        await self.shadow.close()

        def swap() -> int:
            conn.execute(_NEWER_LIVE, (self._began_ms + self.settings.retention_ms,))
            conn.execute(_NEWER_LIVE_CHANGES, (self._began_ms + self.settings.retention_ms,))
            conn.execute("DROP TABLE messages")
            conn.execute("DROP TABLE changes")
            conn.execute(f"ALTER TABLE {SHADOW} RENAME TO messages")
            conn.execute(f"ALTER TABLE {SHADOW_CHANGES} RENAME TO changes")
            conn.execute("CREATE INDEX IF NOT EXISTS messages_expires_at ON messages (expires_at)")
            conn.execute("CREATE INDEX IF NOT EXISTS changes_expires_at ON changes (expires_at)")
            return conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0]

        return await asyncio.to_thread(_in_transaction, conn, swap)

    async def size(self) -> int:
        return await asyncio.to_thread(
            lambda: self._ready().execute("SELECT COUNT(*) FROM messages").fetchone()[0])

    def _ready(self) -> sqlite3.Connection:
        if self._conn is None:
            raise OperationalError("the timeline rebuild is not open")
        return self._conn

    async def close(self) -> None:
        await self.shadow.close()
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await asyncio.to_thread(self._drop_shadow, conn)
        await self.live.close()

    @staticmethod
    def _drop_shadow(conn: sqlite3.Connection) -> None:
        """After a switch there is no shadow left; after a failure or a dry run, drop it."""
        _in_transaction(conn, lambda: (conn.execute(f"DROP TABLE IF EXISTS {SHADOW}"),
                                       conn.execute(f"DROP TABLE IF EXISTS {SHADOW_CHANGES}")))
        conn.close()
