"""Rebuilding the Cassandra timeline in place.

Cassandra has no transactional table swap (the SQLite rebuild's way), and pointing the
readers at a new table would take a configuration change across every process. So the
rebuild repairs the live table instead, which keeps serving throughout: every message of
the log up to the rebuild's marker is written over its row (an upsert by
``(conversation_id, seq)``, the same message, its TTL computed again from ``sent_at``), and
at the switch each replayed conversation loses the rows, up to its newest replayed seq, that
the log does not hold. Rows past that seq are the live projector's, written after the marker,
and stay. A conversation the log never mentions is not scanned for (that would need a
full-table ``SELECT DISTINCT``); such rows can only come from outside the system.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from chat.events import Event
from chat.secure import cassandra_options
from chat.settings import Settings
from projections.timeline_projection import project_timeline
from projections.timelines_cassandra import CassandraTimelineStore
from projections.timelines_sqlite_rebuild import timeline_messages


class CassandraTimelineRebuild:
    """A ``projections.rebuild.RebuildTarget`` for ``CHAT_TIMELINE_BACKEND=cassandra``."""

    name = "timelines"

    def __init__(self, settings: Settings, store: CassandraTimelineStore | None = None) -> None:
        self.live = store or CassandraTimelineStore(settings.cassandra_host_list, settings.cassandra_keyspace,
                                                    settings.retention_ms, settings.cassandra_replicas,
                                                    cluster_options=cassandra_options(settings))
        self.replayed: dict[str, set[int]] = defaultdict(set)
        self.written = 0

    async def open(self) -> None:
        await self.live.open()

    async def apply(self, events: Sequence[Event]) -> None:
        messages = timeline_messages(events)
        for m in messages:
            self.replayed[m.conversation_id].add(m.seq)
        self.written += await self.live.overwrite(messages)
        # The batch's changes (protocol 1.1), in log order, over the rows just written as they were
        # sent: each row ends as the log leaves it (a change made live after the marker is applied
        # again by the catch-up, idempotent by change_seq).
        await project_timeline(self.live, events)

    async def switch(self) -> int:
        """Drop, per replayed conversation, the rows up to its newest replayed seq that the log
        does not hold; returns the rows the log holds (written again)."""
        for conversation_id, seqs in self.replayed.items():
            stray = await self.live.stored_seqs(conversation_id, 1, max(seqs)) - seqs
            if stray:
                await self.live.delete(conversation_id, sorted(stray))
        return self.written

    async def apply_live(self, events: Sequence[Event]) -> None:
        await project_timeline(self.live, events)

    async def size(self) -> int:
        return self.written  # counting a Cassandra table means scanning all of it

    async def close(self) -> None:
        await self.live.close()
