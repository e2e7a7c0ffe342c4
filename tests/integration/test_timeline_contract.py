"""The timeline store contract: one suite, run against every backend.

``TimelineStoreContract`` holds the tests and is not collected itself; each
``Test...`` subclass supplies ``store_factory`` for its backend. The Cassandra
subclass runs on the ``cassandra_hosts`` fixture's node (a local one, or ``CASSANDRA_HOSTS``),
in a fresh keyspace it drops after.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from chat.errors import OperationalError
from chat.settings import Settings
from dataclasses import replace

from chat.events import MessageDeleted, MessageEdited, Origin, ReactionChanged
from projections.timelines import (
    Page, TimelineMessage, TimelineStore, apply_change, current_ms, make_timeline_store, stored_change,
)

MINUTE_MS = 60_000
DAY_MS = 86_400_000
RETENTION_MS = 90 * DAY_MS

StoreFactory = Callable[..., Awaitable[TimelineStore]]

# Run by a child process in the SQLite multi-process test: appends 400 messages in batches of 20.
WRITER_PROCESS = """
import asyncio, sys, time
from projections.timelines import TimelineMessage
from projections.timelines_sqlite import SqliteTimelineStore

async def main(path, conv):
    store = SqliteTimelineStore(path, 90 * 86_400_000)
    await store.open()
    now = int(time.time() * 1000)
    for start in range(1, 401, 20):
        await store.append([
            TimelineMessage(conv, seq, f"m{seq}", "u", f"cm{seq}", f"message {seq}", None, now)
            for seq in range(start, start + 20)
        ])
    await store.close()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def conversation() -> str:
    """A conversation id no other test uses (backends may share a keyspace)."""
    return f"c-{uuid.uuid4().hex[:12]}"


def message(
    conv: str, seq: int, *, body: str | None = None, sent_at: int | None = None, **fields: Any
) -> TimelineMessage:
    return TimelineMessage(
        conversation_id=conv,
        seq=seq,
        message_id=fields.get("message_id", f"m-{conv}-{seq}"),
        sender_id=fields.get("sender_id", f"u-{seq % 3}"),
        client_msg_id=fields.get("client_msg_id", f"cm-{seq}"),
        body=f"message {seq}" if body is None else body,
        media=fields.get("media"),
        sent_at=current_ms() - 1000 + seq if sent_at is None else sent_at,
    )


def seqs(page: Page) -> list[int]:
    return [m.seq for m in page.messages]


class TimelineStoreContract:
    """Behaviour every ``TimelineStore`` must have. Subclasses provide ``store_factory``."""

    # Whether sweep() deletes rows itself (SQLite) or leaves it to TTLs (Cassandra: returns 0).
    sweep_deletes_rows: bool = True

    @pytest_asyncio.fixture
    async def store_factory(self) -> AsyncIterator[StoreFactory]:
        raise NotImplementedError("each backend's subclass provides store_factory")
        yield  # pragma: no cover

    @pytest_asyncio.fixture
    async def store(self, store_factory: StoreFactory) -> TimelineStore:
        return await store_factory()

    async def fill(self, store: TimelineStore, conv: str, count: int) -> list[TimelineMessage]:
        messages = [message(conv, seq) for seq in range(1, count + 1)]
        await store.append(messages)
        return messages

    async def test_append_then_page_in_seq_order(self, store: TimelineStore) -> None:
        conv = conversation()
        messages = [message(conv, seq) for seq in range(1, 11)]
        shuffled = messages[:]
        random.Random(7).shuffle(shuffled)
        await store.append(shuffled)
        page = await store.page(conv)
        assert page.messages == messages
        assert page.has_more is False

    async def test_reappend_is_idempotent_and_first_write_wins(self, store: TimelineStore) -> None:
        conv = conversation()
        first = message(conv, 1, body="first")
        await store.append([first])
        await store.append([first, message(conv, 1, body="second", sender_id="someone-else"), message(conv, 2)])
        await store.append([message(conv, 2, body="rewritten")])
        page = await store.page(conv)
        assert seqs(page) == [1, 2]
        assert page.messages[0] == first
        assert page.messages[1].body == "message 2"

    async def test_duplicates_within_one_batch_keep_the_first(self, store: TimelineStore) -> None:
        conv = conversation()
        await store.append([message(conv, 1, body="first"), message(conv, 1, body="second")])
        page = await store.page(conv)
        assert [m.body for m in page.messages] == ["first"]

    async def test_default_page_is_newest_50(self, store: TimelineStore) -> None:
        conv = conversation()
        await self.fill(store, conv, 120)
        page = await store.page(conv)
        assert seqs(page) == list(range(71, 121))
        assert page.has_more is True

    async def test_before_seq_walks_back_to_the_first_message(self, store: TimelineStore) -> None:
        conv = conversation()
        await self.fill(store, conv, 25)  # a multiple of the limit: the last page is exactly full
        seen: list[int] = []
        page = await store.page(conv, limit=5)
        while True:
            seen = seqs(page) + seen
            if not page.has_more:
                break
            assert page.messages[0].seq > 1, "has_more must be False once seq 1 is in the page"
            page = await store.page(conv, before_seq=page.messages[0].seq, limit=5)
        assert seen == list(range(1, 26))
        assert seqs(page) == [1, 2, 3, 4, 5]
        assert await store.page(conv, before_seq=1, limit=5) == Page([], False)

    async def test_before_seq_walk_with_a_short_last_page(self, store: TimelineStore) -> None:
        conv = conversation()
        await self.fill(store, conv, 12)
        pages = [await store.page(conv, before_seq=before, limit=5) for before in (13, 8, 3)]
        assert [seqs(p) for p in pages] == [[8, 9, 10, 11, 12], [3, 4, 5, 6, 7], [1, 2]]
        assert [p.has_more for p in pages] == [True, True, False]

    async def test_after_seq_pages_forward(self, store: TimelineStore) -> None:
        conv = conversation()
        await self.fill(store, conv, 12)
        pages = [await store.page(conv, after_seq=after, limit=5) for after in (0, 5, 10, 12)]
        assert [seqs(p) for p in pages] == [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10], [11, 12], []]
        assert [p.has_more for p in pages] == [True, True, False, False]
        exact = await store.page(conv, after_seq=7, limit=5)
        assert (seqs(exact), exact.has_more) == ([8, 9, 10, 11, 12], False)

    async def test_before_and_after_together(self, store: TimelineStore) -> None:
        conv = conversation()
        await self.fill(store, conv, 20)
        page = await store.page(conv, after_seq=5, before_seq=15, limit=4)
        assert (seqs(page), page.has_more) == ([6, 7, 8, 9], True)
        # has_more only counts messages inside the window, not 15..20 beyond it.
        page = await store.page(conv, after_seq=9, before_seq=15, limit=10)
        assert (seqs(page), page.has_more) == ([10, 11, 12, 13, 14], False)
        page = await store.page(conv, after_seq=5, before_seq=15, limit=9)
        assert (seqs(page), page.has_more) == (list(range(6, 15)), False)
        assert await store.page(conv, after_seq=5, before_seq=6) == Page([], False)

    async def test_limit_is_respected(self, store: TimelineStore) -> None:
        conv = conversation()
        await self.fill(store, conv, 10)
        assert seqs(await store.page(conv, limit=1)) == [10]
        assert seqs(await store.page(conv, limit=3, before_seq=9)) == [6, 7, 8]
        assert seqs(await store.page(conv, limit=3, after_seq=2)) == [3, 4, 5]
        whole = await store.page(conv, limit=10)
        assert (len(whole.messages), whole.has_more) == (10, False)
        with pytest.raises(ValueError):
            await store.page(conv, limit=0)

    async def test_conversations_are_isolated(self, store: TimelineStore) -> None:
        a, b = conversation(), conversation()
        await store.append([message(a, seq, body=f"a{seq}") for seq in range(1, 6)])
        await store.append([message(b, seq, body=f"b{seq}") for seq in range(1, 4)])
        page_a, page_b = await store.page(a), await store.page(b)
        assert [m.body for m in page_a.messages] == ["a1", "a2", "a3", "a4", "a5"]
        assert [m.body for m in page_b.messages] == ["b1", "b2", "b3"]
        assert {m.conversation_id for m in page_a.messages} == {a}
        assert (await store.last_seq(a), await store.last_seq(b)) == (5, 3)

    async def test_expired_messages_are_hidden(self, store_factory: StoreFactory) -> None:
        store = await store_factory(retention_ms=10 * MINUTE_MS)
        conv, now = conversation(), current_ms()
        old = [message(conv, seq, sent_at=now - 8 * MINUTE_MS) for seq in (1, 2, 3)]
        new = [message(conv, seq, sent_at=now) for seq in (4, 5)]
        gone = message(conv, 6, sent_at=now - 11 * MINUTE_MS)  # expired before it is appended
        await store.append([*old, *new, gone])
        assert seqs(await store.page(conv, now_ms=now)) == [1, 2, 3, 4, 5]
        # Expiry is sent_at + retention <= now: the old ones die at exactly now + 2 minutes.
        assert seqs(await store.page(conv, now_ms=now + 2 * MINUTE_MS - 1)) == [1, 2, 3, 4, 5]
        later = now + 2 * MINUTE_MS
        page = await store.page(conv, now_ms=later)
        assert (seqs(page), page.has_more) == ([4, 5], False)
        # Expired messages do not count for has_more, in either direction.
        page = await store.page(conv, limit=2, now_ms=later)
        assert (seqs(page), page.has_more) == ([4, 5], False)
        page = await store.page(conv, after_seq=0, limit=1, now_ms=later)
        assert (seqs(page), page.has_more) == ([4], True)
        page = await store.page(conv, after_seq=0, limit=2, now_ms=later)
        assert (seqs(page), page.has_more) == ([4, 5], False)
        assert await store.page(conv, now_ms=now + 20 * MINUTE_MS) == Page([], False)

    async def test_sweep_removes_expired_messages(self, store_factory: StoreFactory) -> None:
        store = await store_factory(retention_ms=10 * MINUTE_MS)
        conv, now = conversation(), current_ms()
        await store.append([message(conv, seq, sent_at=now - 8 * MINUTE_MS) for seq in (1, 2, 3)])
        await store.append([message(conv, seq, sent_at=now) for seq in (4, 5)])
        later = now + 2 * MINUTE_MS
        swept = await store.sweep(now_ms=later)
        assert seqs(await store.page(conv, now_ms=later)) == [4, 5]
        if self.sweep_deletes_rows:
            assert swept == 3
            # Gone for good: even a reader whose clock says they are alive cannot see them.
            assert seqs(await store.page(conv, now_ms=now)) == [4, 5]
            assert await store.sweep(now_ms=later) == 0
        else:
            assert swept == 0

    async def test_last_seq(self, store: TimelineStore) -> None:
        conv = conversation()
        assert await store.last_seq(conv) == 0
        await self.fill(store, conv, 7)
        assert await store.last_seq(conv) == 7
        await store.append([message(conv, 10)])
        assert await store.last_seq(conv) == 10

    async def test_empty_conversation(self, store: TimelineStore) -> None:
        conv = conversation()
        assert await store.page(conv) == Page([], False)
        assert await store.page(conv, after_seq=0) == Page([], False)
        assert await store.page(conv, before_seq=10, limit=5) == Page([], False)
        await store.append([])  # an empty batch is fine too
        assert await store.page(conv) == Page([], False)

    async def test_unicode_and_media_round_trip(self, store: TimelineStore) -> None:
        conv = f"c-ünï-{uuid.uuid4().hex[:8]}"
        media = {
            "kind": "image",
            "url": "https://cdn.example/ü/猫.png",
            "size": 123_456,
            "dims": [640, 480],
            "alt": "🐱 \"quoted\" 'single' \\ back",
            "meta": {"ok": True, "none": None, "ratio": 1.5},
        }
        with_media = message(conv, 1, body="héllo 👋🏽 你好 مرحبا 👩‍👩‍👧\nline two\ttab", media=media)
        without = message(conv, 2, body="", media=None)
        await store.append([with_media, without])
        page = await store.page(conv)
        assert page.messages == [with_media, without]
        assert page.messages[0].to_dict() == with_media.to_dict()
        assert page.messages[0].media == media and page.messages[1].media is None

    async def test_batch_of_1000_in_one_call(self, store: TimelineStore) -> None:
        conv = conversation()
        messages = await self.fill(store, conv, 1000)
        assert await store.last_seq(conv) == 1000
        read: list[TimelineMessage] = []
        after = 0
        while True:
            page = await store.page(conv, after_seq=after, limit=200)
            read += page.messages
            if not page.has_more:
                break
            after = page.messages[-1].seq
        assert read == messages

    async def test_a_reader_never_sees_a_seq_before_the_ones_below_it(self, store: TimelineStore) -> None:
        """While a batch is appended, every page read from the start is gap-free: a sync that
        read seq n+1 without n would replay past a message the device then never gets."""
        conv, seen = conversation(), []
        for start in range(0, 200, 50):
            writing = asyncio.create_task(store.append([message(conv, seq) for seq in range(start + 1, start + 51)]))
            while not writing.done():
                seen.append(seqs(await store.page(conv, after_seq=0, limit=200)))
            await writing
        assert [s for s in seen if s != list(range(1, len(s) + 1))] == []
        assert seqs(await store.page(conv, after_seq=0, limit=200)) == list(range(1, 201))

    async def test_ping_and_closed_store(self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        await store.ping()
        await store.close()
        with pytest.raises(OperationalError):
            await store.ping()
        with pytest.raises(OperationalError):
            await store.page(conversation())

    # Protocol 1.1: replies, mentions, and the changeable state with its change log.

    async def change(self, store: TimelineStore, event) -> TimelineMessage:
        """What the projector does for one change: read, apply, write state and log entry."""
        current = (await store.messages(event.conversation_id, [event.seq]))[event.seq]
        after = apply_change(current, event)
        await store.apply_changes([after], [stored_change(event, after)])
        return after

    async def test_reply_preview_is_the_replied_to_message_as_it_is_now(self, store: TimelineStore) -> None:
        conv = conversation()
        long_body = "é" * 300
        await store.append([message(conv, 1, body=long_body),
                            replace(message(conv, 2, body="re"), reply_to={"seq": 1, "sender_id": "u-1"},
                                    mentions=["u-1", "u-0"])])
        (_, reply) = (await store.page(conv)).messages
        assert reply.reply_to == {"seq": 1, "sender_id": "u-1", "body": "é" * 200}
        assert reply.mentions == ["u-1", "u-0"]
        await self.change(store, MessageEdited(conv, 1, 1, "e1", "u-1", "new words", 5, Origin("gw")))
        assert (await store.messages(conv, [2]))[2].reply_to["body"] == "new words"
        await self.change(store, MessageDeleted(conv, 1, 2, "d1", "u-1", 6, Origin("gw")))
        assert (await store.page(conv)).messages[1].reply_to == {"seq": 1, "sender_id": "u-1", "body": ""}

    async def test_changes_update_state_and_log_in_change_seq_order(self, store: TimelineStore) -> None:
        conv = conversation()
        await self.fill(store, conv, 3)
        o = Origin("gw")
        events = [MessageEdited(conv, 2, 1, "e", "u-2", "edited", 100, o),
                  ReactionChanged(conv, 2, 2, "r1", "u-0", "👍", True, 101, o),
                  ReactionChanged(conv, 2, 3, "r2", "u-1", "🎉", True, 102, o),
                  ReactionChanged(conv, 2, 4, "r3", "u-1", "👍", True, 103, o),
                  ReactionChanged(conv, 2, 5, "r4", "u-0", "👍", False, 104, o),
                  ReactionChanged(conv, 3, 6, "r5", "u-0", "👍", True, 105, o)]
        for event in events:
            await self.change(store, event)
        m = (await store.messages(conv, [2]))[2]
        assert (m.body, m.edited_at, m.deleted) == ("edited", 100, False)
        assert m.reactions == [{"emoji": "👍", "user_ids": ["u-1"]}, {"emoji": "🎉", "user_ids": ["u-1"]}]
        page = await store.changes(conv, after_change_seq=1, limit=3)
        assert [(c.change_seq, c.seq, c.change, c.by) for c, _ in page.changes] == [
            (2, 2, "reaction", "u-0"), (3, 2, "reaction", "u-1"), (4, 2, "reaction", "u-1")]
        assert page.has_more is True
        assert all(msg == m for _, msg in page.changes)  # each with its message as it is now
        rest = await store.changes(conv, after_change_seq=4)
        assert [c.change_seq for c, _ in rest.changes] == [5, 6] and rest.has_more is False
        assert await store.last_change_seq(conv) == 6
        assert await store.last_change_seq(conversation()) == 0

    async def test_a_change_applied_twice_changes_nothing(self, store: TimelineStore) -> None:
        conv = conversation()
        await self.fill(store, conv, 1)
        o = Origin("gw")
        on = ReactionChanged(conv, 1, 1, "r1", "u-0", "👍", True, 101, o)
        off = ReactionChanged(conv, 1, 2, "r2", "u-0", "👍", False, 102, o)
        for event in (on, off, on):  # a projector re-reading its batch after the later change
            await self.change(store, event)
        assert (await store.messages(conv, [1]))[1].reactions == []
        assert [c.change_seq for c, _ in (await store.changes(conv)).changes] == [1, 2]

    async def test_delete_erases_body_media_mentions_and_reactions(self, store: TimelineStore) -> None:
        conv = conversation()
        await store.append([replace(message(conv, 1, body="secret", media={"media_id": "md1"}), mentions=["u-2"])])
        o = Origin("gw")
        await self.change(store, ReactionChanged(conv, 1, 1, "r", "u-2", "👍", True, 100, o))
        await self.change(store, MessageDeleted(conv, 1, 2, "d", "u-1", 101, o, "md1"))
        (m,) = (await store.page(conv)).messages
        assert (m.body, m.media, m.mentions, m.reactions, m.deleted) == ("", None, [], [], True)
        assert m.to_dict()["deleted"] is True

    async def test_messages_reads_only_stored_unexpired_seqs(self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        conv = conversation()
        now = current_ms()
        await store.append([message(conv, 1, sent_at=now - RETENTION_MS + 2 * MINUTE_MS), message(conv, 2)])
        assert sorted(await store.messages(conv, [1, 2, 3])) == [1, 2]
        assert sorted(await store.messages(conv, [1, 2], now_ms=now + 3 * MINUTE_MS)) == [2]
        assert await store.messages(conv, []) == {}


class TestSqliteTimelineStore(TimelineStoreContract):
    @pytest_asyncio.fixture
    async def store_factory(self, tmp_path: Path) -> AsyncIterator[StoreFactory]:
        opened: list[TimelineStore] = []

        async def factory(retention_ms: int = RETENTION_MS) -> TimelineStore:
            from projections.timelines_sqlite import SqliteTimelineStore

            store = SqliteTimelineStore(tmp_path / f"db{len(opened)}" / "timelines.sqlite3", retention_ms)
            await store.open()
            opened.append(store)
            return store

        yield factory
        for store in opened:
            await store.close()

    async def test_processes_share_one_file(self, tmp_path: Path) -> None:
        """A writer process and readers on one file, as the worker and the gateways are."""
        from projections.timelines_sqlite import SqliteTimelineStore

        path = tmp_path / "shared" / "timelines.sqlite3"
        conv = conversation()
        child = await asyncio.create_subprocess_exec(sys.executable, "-c", WRITER_PROCESS, str(path), conv)
        reader = SqliteTimelineStore(path, RETENTION_MS)
        await reader.open()
        try:
            # Read, and write another conversation, while the child appends 400 messages.
            other = conversation()
            for seq in range(1, 51):
                await reader.append([message(other, seq)])
                page = await reader.page(conv, limit=20)
                assert seqs(page) == sorted(seqs(page))
                await reader.sweep()
            assert await asyncio.wait_for(child.wait(), 60) == 0
            assert await reader.last_seq(conv) == 400
            assert seqs(await reader.page(conv, limit=3)) == [398, 399, 400]
            assert await reader.last_seq(other) == 50
        finally:
            await reader.close()
            if child.returncode is None:
                child.kill()
                await child.wait()

    async def test_sweep_deletes_in_chunks(self, store_factory: StoreFactory, monkeypatch: pytest.MonkeyPatch) -> None:
        import projections.timelines_sqlite

        monkeypatch.setattr(projections.timelines_sqlite, "SWEEP_CHUNK", 2)
        store = await store_factory(retention_ms=MINUTE_MS)
        conv, now = conversation(), current_ms()
        await store.append([message(conv, seq, sent_at=now) for seq in range(1, 6)])
        assert await store.sweep(now_ms=now + MINUTE_MS) == 5
        assert await store.last_seq(conv) == 0

    async def test_a_table_of_the_previous_version_is_migrated(self, tmp_path: Path) -> None:
        import sqlite3

        from projections.timelines_sqlite import SqliteTimelineStore

        path = tmp_path / "old.sqlite3"
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE messages (conversation_id TEXT NOT NULL, seq INTEGER NOT NULL, message_id TEXT"
                     " NOT NULL, sender_id TEXT NOT NULL, client_msg_id TEXT NOT NULL, body TEXT NOT NULL, media TEXT,"
                     " sent_at INTEGER NOT NULL, expires_at INTEGER NOT NULL, PRIMARY KEY (conversation_id, seq))"
                     " WITHOUT ROWID")
        now = current_ms()
        conn.execute("INSERT INTO messages VALUES ('c', 1, 'm', 'u', 'cm', 'old', NULL, ?, ?)", (now, now + DAY_MS))
        conn.commit()
        conn.close()
        store = SqliteTimelineStore(path, RETENTION_MS)
        await store.open()
        try:
            (m,) = (await store.page("c")).messages
            assert (m.body, m.reply_to, m.mentions, m.deleted, m.reactions) == ("old", None, [], False, [])
            await store.append([message("c", 2)])
            assert await store.last_seq("c") == 2
        finally:
            await store.close()

    async def test_unusable_path_is_an_operational_error(self, tmp_path: Path) -> None:
        from projections.timelines_sqlite import SqliteTimelineStore

        (tmp_path / "a-file").write_text("not a directory")
        store = SqliteTimelineStore(tmp_path / "a-file" / "timelines.sqlite3", RETENTION_MS)
        with pytest.raises(OperationalError):
            await store.open()


@pytest.mark.cassandra
class TestCassandraTimelineStore(TimelineStoreContract):
    sweep_deletes_rows = False

    @pytest.fixture(scope="class")
    @classmethod
    def cassandra_settings(cls, cassandra_hosts: str) -> Settings:
        keyspace = f"chat_test_{uuid.uuid4().hex[:12]}"
        return Settings(timeline_backend="cassandra", cassandra_hosts=cassandra_hosts, cassandra_keyspace=keyspace)

    @pytest_asyncio.fixture
    async def store_factory(self, cassandra_settings: Settings) -> AsyncIterator[StoreFactory]:
        from projections.timelines_cassandra import CassandraTimelineStore

        opened: list[TimelineStore] = []

        async def factory(retention_ms: int = RETENTION_MS) -> TimelineStore:
            store = CassandraTimelineStore(
                cassandra_settings.cassandra_host_list, cassandra_settings.cassandra_keyspace, retention_ms
            )
            await store.open()
            opened.append(store)
            return store

        yield factory
        for store in opened:
            await store.close()

    async def test_rebuild_repairs_the_live_table_in_place(self, store_factory: StoreFactory,
                                                           cassandra_settings: Settings) -> None:
        from chat.events import MessageAccepted, Origin
        from projections.timelines_cassandra_rebuild import CassandraTimelineRebuild

        store = await store_factory()
        now = current_ms()
        log = [MessageAccepted("c-rebuild", seq, f"m{seq}", "u", f"cm{seq}", f"message {seq}", now, Origin("gw"))
               for seq in (1, 2, 3, 5)]
        await store.overwrite([message("c-rebuild", 2, body="damaged"), message("c-rebuild", 4, body="stray"),
                               message("c-rebuild", 9, body="written live after the marker")])
        rebuild = CassandraTimelineRebuild(cassandra_settings, store=store)
        await rebuild.apply(log)
        assert await rebuild.switch() == 4
        page = await store.page("c-rebuild", limit=50)
        assert [(m.seq, m.body) for m in page.messages] == [
            (1, "message 1"), (2, "message 2"), (3, "message 3"), (5, "message 5"),
            (9, "written live after the marker")]

    async def test_speaks_protocol_v5_without_a_downgrade(self, store_factory: StoreFactory,
                                                          caplog: pytest.LogCaptureFixture) -> None:
        with caplog.at_level(logging.WARNING, logger="cassandra"):
            store = await store_factory()
        assert store._cluster.protocol_version == 5  # type: ignore[attr-defined]
        assert not [r.getMessage() for r in caplog.records if "protocol" in r.getMessage().lower()]

    async def test_rows_carry_the_rest_of_their_retention_as_ttl(self, store_factory: StoreFactory) -> None:
        store = await store_factory(retention_ms=10 * MINUTE_MS)
        conv, now = conversation(), current_ms()
        await store.append([message(conv, 1, sent_at=now - 8 * MINUTE_MS), message(conv, 2, sent_at=now)])
        ttls = dict(await raw_rows(store, f"SELECT seq, TTL(body) FROM {store.keyspace}.messages"  # type: ignore
                                          " WHERE conversation_id = %s", conv))
        assert 115 <= ttls[1] <= 120 and 595 <= ttls[2] <= 600, ttls

    async def test_rows_are_gone_once_their_ttl_runs_out(self, store_factory: StoreFactory) -> None:
        store = await store_factory(retention_ms=2_000)
        conv = conversation()
        await store.append([message(conv, seq, sent_at=current_ms()) for seq in (1, 2, 3)])
        query = f"SELECT seq FROM {store.keyspace}.messages WHERE conversation_id = %s"  # type: ignore
        assert len(await raw_rows(store, query, conv)) == 3
        await asyncio.sleep(3.1)  # a TTL is whole seconds, rounded up: 2 s here
        assert await raw_rows(store, query, conv) == []  # not filtered out: not there

    async def test_rows_without_media_hold_no_tombstone(self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        conv = conversation()
        await store.append([message(conv, seq) for seq in (1, 2, 3)] + [message(conv, 4, media={"kind": "file"})])
        cql = f"SELECT seq FROM {store.keyspace}.messages WHERE conversation_id = %s"  # type: ignore[attr-defined]
        rows = await asyncio.to_thread(store._session.execute, cql, (conv,), trace=True)  # type: ignore
        trace = await asyncio.to_thread(rows.get_query_trace, 10)
        read = [e.description for e in trace.events if "tombstone cells" in e.description]
        assert read == ["Read 4 live rows and 0 tombstone cells"], read
        assert [m.media for m in (await store.page(conv)).messages] == [None, None, None, {"kind": "file"}]

    async def test_stored_seqs_reads_every_page(self, store_factory: StoreFactory,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
        import projections.timelines_cassandra

        monkeypatch.setattr(projections.timelines_cassandra, "PAGE_ROWS", 7)
        store = await store_factory()
        conv = conversation()
        await self.fill(store, conv, 30)
        assert await store.stored_seqs(conv, 1, 30) == set(range(1, 31))  # type: ignore[attr-defined]
        assert await store.stored_seqs(conv, 5, 19) == set(range(5, 20))  # type: ignore[attr-defined]

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def drop_keyspace_afterwards(cls, cassandra_settings: Settings) -> Iterator[None]:
        yield
        from cassandra.cluster import Cluster

        from projections.timelines_cassandra import PROTOCOL_VERSION, contact_point

        cluster = Cluster(contact_points=[contact_point(h) for h in cassandra_settings.cassandra_host_list],
                          protocol_version=PROTOCOL_VERSION)
        try:
            cluster.connect().execute(f"DROP KEYSPACE IF EXISTS {cassandra_settings.cassandra_keyspace}", timeout=60)
        finally:
            cluster.shutdown()


async def raw_rows(store: Any, cql: str, *values: Any) -> list[tuple[Any, ...]]:
    """Rows of a plain statement on a Cassandra store's own session, no retention filter."""
    rows = await asyncio.to_thread(store._session.execute, cql, values)
    return [tuple(row) for row in rows]


def test_to_dict_is_the_protocol_message() -> None:
    m = message("c-1", 3, body="hi", media={"kind": "file"}, sent_at=1_700_000_000_000)
    assert m.to_dict() == {
        "conversation_id": "c-1",
        "seq": 3,
        "message_id": "m-c-1-3",
        "sender_id": "u-0",
        "client_msg_id": "cm-3",
        "body": "hi",
        "media": {"kind": "file"},
        "sent_at": 1_700_000_000_000,
        "reply_to": None,
        "mentions": [],
        "edited_at": None,
        "deleted": False,
        "reactions": [],
    }


def test_factory_picks_the_backend(tmp_path: Path) -> None:
    from projections.timelines_cassandra import CassandraTimelineStore
    from projections.timelines_sqlite import SqliteTimelineStore

    sqlite = make_timeline_store(Settings(sqlite_path=str(tmp_path / "t.sqlite3"), retention_days=1))
    assert isinstance(sqlite, SqliteTimelineStore)
    assert (sqlite.path, sqlite.retention_ms) == (tmp_path / "t.sqlite3", DAY_MS)
    cassandra = make_timeline_store(
        Settings(timeline_backend="cassandra", cassandra_hosts="h1, h2:9043", cassandra_keyspace="chat_x")
    )
    assert isinstance(cassandra, CassandraTimelineStore)
    assert (cassandra.hosts, cassandra.keyspace) == (["h1", "h2:9043"], "chat_x")
    with pytest.raises(ValueError):
        make_timeline_store(Settings(timeline_backend="redis"))
