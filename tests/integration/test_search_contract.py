"""The search index contract: one suite, run against every backend.

``SearchIndexContract`` holds the tests and is not collected itself; each ``Test...`` subclass
supplies ``index_factory`` for its backend and ``stored`` (what the backend holds of a message,
read from its tables directly, to check erasure). The Cassandra subclass runs on the
``cassandra_hosts`` fixture's node, in a fresh keyspace it drops after.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from chat.errors import OperationalError
from chat.settings import Settings
from projections.search import SearchDoc, SearchIndex, SearchPage, make_search_index, search_sqlite_path
from projections.timelines import current_ms

MINUTE_MS = 60_000
DAY_MS = 86_400_000
RETENTION_MS = 90 * DAY_MS

IndexFactory = Callable[..., Awaitable[SearchIndex]]


def conversation() -> str:
    """A conversation id no other test uses (backends may share a keyspace)."""
    return f"c-{uuid.uuid4().hex[:12]}"


def doc(conv: str, seq: int, body: str, *, sent_at: int | None = None, sender_id: str = "u-1") -> SearchDoc:
    return SearchDoc(conv, seq, sender_id, body, current_ms() - 10_000 + seq if sent_at is None else sent_at)


def found(page: SearchPage) -> list[tuple[str, int]]:
    return [(h.conversation_id, h.seq) for h in page.results]


def seqs(page: SearchPage) -> list[int]:
    return [h.seq for h in page.results]


class SearchIndexContract:
    """Behaviour every ``SearchIndex`` must have. Subclasses provide ``index_factory``."""

    sweep_deletes_rows: bool = True

    @pytest_asyncio.fixture
    async def index_factory(self) -> AsyncIterator[IndexFactory]:
        raise NotImplementedError("each backend's subclass provides index_factory")
        yield  # pragma: no cover

    @pytest_asyncio.fixture
    async def index(self, index_factory: IndexFactory) -> SearchIndex:
        return await index_factory()

    async def stored(self, index: Any, conv: str, seq: int) -> list[str]:
        """Every stored value (body, words, terms) the backend holds for the message."""
        raise NotImplementedError

    async def test_whole_words_and_the_last_as_a_prefix(self, index: SearchIndex) -> None:
        conv = conversation()
        await index.add([doc(conv, 1, "the quick brown fox"), doc(conv, 2, "quicker brownies"),
                         doc(conv, 3, "a brown quickstep")])
        scope = {conv: None}
        assert seqs(await index.search(scope, "quick")) == [3, 2, 1]  # a prefix, the last word
        assert seqs(await index.search(scope, "quick brown")) == [1]  # "quick" must be whole
        assert seqs(await index.search(scope, "brown quick")) == [3, 1]
        assert seqs(await index.search(scope, "brownie")) == [2]
        assert seqs(await index.search(scope, "own")) == []  # a prefix, never a substring
        assert seqs(await index.search(scope, "quick fox")) == [1]
        assert seqs(await index.search(scope, "quick cat")) == []  # every word is required

    async def test_case_and_nfkc_and_highlights(self, index: SearchIndex) -> None:
        conv = conversation()
        await index.add([doc(conv, 1, "Die STRAßE ist lang"), doc(conv, 2, "ﬁle ＦＯＯ"),
                         doc(conv, 3, "İstanbul'da 😀 kar")])
        scope = {conv: None}
        page = await index.search(scope, "strasse")
        assert seqs(page) == [1] and page.results[0].highlights == [(4, 10)]
        page = await index.search(scope, "die STRAS")
        assert seqs(page) == [1] and page.results[0].highlights == [(0, 3), (4, 9)]
        page = await index.search(scope, "foo fi")
        assert seqs(page) == [2] and page.results[0].highlights == [(0, 1), (4, 7)]
        page = await index.search(scope, "İSTANBUL ka")
        assert seqs(page) == [3] and page.results[0].highlights == [(0, 8), (14, 16)]
        assert page.results[0].body == "İstanbul'da 😀 kar" and page.results[0].sent_at > 0

    async def test_clear_erases_everything_and_count_counts(self, index: SearchIndex) -> None:
        """What ``chat rebuild search`` starts from (the whole index, every conversation)."""
        await index.clear()
        conv, other = conversation(), conversation()
        await index.add([doc(conv, 1, "alpha beta"), doc(conv, 2, "beta"), doc(other, 1, "beta gamma")])
        assert await index.count() == 3
        await index.clear()
        assert await index.count() == 0
        assert seqs(await index.search({conv: None, other: None}, "beta")) == []
        await index.add([doc(conv, 1, "alpha again")])  # an index cleared takes writes as before
        assert seqs(await index.search({conv: None}, "again")) == [1]

    async def test_add_is_idempotent_first_write_wins(self, index: SearchIndex) -> None:
        conv = conversation()
        first = doc(conv, 1, "original words")
        await index.add([first, doc(conv, 1, "second version")])
        await index.add([first])
        await index.add([doc(conv, 1, "rewritten body")])
        page = await index.search({conv: None}, "original")
        assert [(h.seq, h.body, h.sent_at) for h in page.results] == [(1, "original words", first.sent_at)]
        assert seqs(await index.search({conv: None}, "rewritten")) == []
        assert seqs(await index.search({conv: None}, "second")) == []

    async def test_empty_body_is_not_indexed_but_an_edit_indexes_it(self, index: SearchIndex) -> None:
        conv = conversation()
        await index.add([doc(conv, 1, ""), doc(conv, 2, "😀😀")])
        assert await self.stored(index, conv, 1) in ([], [""])
        await index.replace(conv, 1, "caption added later")
        assert seqs(await index.search({conv: None}, "caption")) == [1]

    async def test_replace_finds_only_the_new_body(self, index: SearchIndex) -> None:
        conv = conversation()
        original = doc(conv, 1, "meet at the station")
        await index.add([original, doc(conv, 2, "station wagon")])
        await index.replace(conv, 1, "meet at the harbour")
        scope = {conv: None}
        assert seqs(await index.search(scope, "station")) == [2]
        page = await index.search(scope, "harb")
        assert [(h.seq, h.body, h.sent_at, h.highlights) for h in page.results] == [
            (1, "meet at the harbour", original.sent_at, [(12, 16)])]
        assert not any("station" in value for value in await self.stored(index, conv, 1))
        await index.replace(conv, 1, "")  # edited to no words: found by nothing
        assert seqs(await index.search(scope, "meet")) == []
        await index.replace(conv, 9, "unknown message")  # nothing to replace: no change
        assert seqs(await index.search(scope, "unknown")) == []

    async def test_remove_erases_the_message(self, index: SearchIndex) -> None:
        conv = conversation()
        await index.add([doc(conv, 1, "secret plans tonight"), doc(conv, 2, "public plans")])
        assert any("secret" in value for value in await self.stored(index, conv, 1))
        await index.remove(conv, 1)
        assert seqs(await index.search({conv: None}, "plans")) == [2]
        assert seqs(await index.search({conv: None}, "secret")) == []
        assert await self.stored(index, conv, 1) == []  # body and words gone, not flagged
        await index.remove(conv, 1)  # removing again changes nothing
        await index.remove(conv, 7)
        assert seqs(await index.search({conv: None}, "plans")) == [2]

    async def test_expired_messages_are_never_found(self, index_factory: IndexFactory) -> None:
        index = await index_factory(retention_ms=10 * MINUTE_MS)
        conv, now = conversation(), current_ms()
        await index.add([doc(conv, 1, "old news", sent_at=now - 8 * MINUTE_MS), doc(conv, 2, "new news", sent_at=now),
                         doc(conv, 3, "dead news", sent_at=now - 11 * MINUTE_MS)])
        assert seqs(await index.search({conv: None}, "news", now_ms=now)) == [2, 1]
        # Expired at sent_at + retention <= now: the old one at exactly now + 2 minutes.
        assert seqs(await index.search({conv: None}, "news", now_ms=now + 2 * MINUTE_MS - 1)) == [2, 1]
        page = await index.search({conv: None}, "news", limit=1, now_ms=now + 2 * MINUTE_MS)
        assert (seqs(page), page.has_more) == ([2], False)  # expired ones do not count for has_more

    async def test_sweep_erases_expired_messages(self, index_factory: IndexFactory) -> None:
        index = await index_factory(retention_ms=10 * MINUTE_MS)
        conv, now = conversation(), current_ms()
        await index.add([doc(conv, 1, "old news", sent_at=now - 8 * MINUTE_MS), doc(conv, 2, "new news", sent_at=now)])
        swept = await index.sweep(now_ms=now + 2 * MINUTE_MS)
        assert seqs(await index.search({conv: None}, "news", now_ms=now + 2 * MINUTE_MS)) == [2]
        if self.sweep_deletes_rows:
            assert swept == 1
            assert await self.stored(index, conv, 1) == []
            assert seqs(await index.search({conv: None}, "news", now_ms=now)) == [2]
        else:
            assert swept == 0

    async def test_scopes_never_cross(self, index: SearchIndex) -> None:
        mine, other = conversation(), conversation()
        await index.add([doc(mine, 1, "lunch today"), doc(other, 1, "lunch tomorrow"), doc(other, 2, "lunch")])
        assert found(await index.search({mine: None}, "lunch")) == [(mine, 1)]
        assert found(await index.search({mine: None}, "tomorrow")) == []
        assert found(await index.search({}, "lunch")) == []
        both = await index.search({mine: None, other: None}, "lunch")
        assert sorted(found(both)) == sorted([(mine, 1), (other, 1), (other, 2)])

    async def test_a_removed_member_finds_up_to_their_removal(self, index: SearchIndex) -> None:
        conv = conversation()
        await index.add([doc(conv, seq, f"update number {seq}") for seq in range(1, 11)])
        assert seqs(await index.search({conv: 4}, "update")) == [4, 3, 2, 1]
        page = await index.search({conv: 4}, "update", limit=2)
        assert (seqs(page), page.has_more) == ([4, 3], True)
        page = await index.search({conv: 4}, "update", limit=4)
        assert (seqs(page), page.has_more) == ([4, 3, 2, 1], False)
        assert seqs(await index.search({conv: 4}, "update 9")) == []

    async def test_before_limit_and_has_more_walk_every_result_once(self, index: SearchIndex) -> None:
        a, b = conversation(), conversation()
        base = current_ms() - 60_000
        # Two conversations interleaved, with ties on sent_at, and a non-matching message between.
        docs = [doc(a, seq, f"ping {seq}", sent_at=base + seq // 2) for seq in range(1, 24)]
        docs += [doc(b, seq, f"ping b{seq}", sent_at=base + seq) for seq in range(1, 8)]
        docs += [doc(b, 8, "pong", sent_at=base + 5)]
        await index.add(docs)
        scopes = {a: None, b: None}
        whole = await index.search(scopes, "ping", limit=50)
        expected = sorted([(d.sent_at, d.conversation_id, d.seq) for d in docs if d.body != "pong"], reverse=True)
        assert [(h.sent_at, h.conversation_id, h.seq) for h in whole.results] == expected
        assert whole.has_more is False
        for limit in (3, 4, 5):
            walked, before = [], None
            while True:
                page = await index.search(scopes, "ping", before=before, limit=limit)
                assert 0 < len(page.results) <= limit
                walked += [(h.sent_at, h.conversation_id, h.seq) for h in page.results]
                if not page.has_more:
                    break
                before = page.results[-1].sent_at
            assert walked == expected, limit  # every result once, none lost to a split tie
        page = await index.search(scopes, "ping", limit=3)  # 2 at base+11, 2 at base+10: 3 would
        assert [h.sent_at for h in page.results] == [base + 11] * 2 and page.has_more  # split one
        page = await index.search(scopes, "ping", limit=4)
        assert [h.sent_at for h in page.results] == [base + 11] * 2 + [base + 10] * 2 and page.has_more
        page = await index.search(scopes, "ping", before=base + 2)  # exclusive
        assert [h.sent_at for h in page.results] == [base + 1, base + 1, base + 1, base]

    async def test_limit_is_clamped_and_default_is_20(self, index: SearchIndex) -> None:
        conv = conversation()
        await index.add([doc(conv, seq, "many words") for seq in range(1, 61)])
        page = await index.search({conv: None}, "many")
        assert (len(page.results), page.has_more) == (20, True)
        page = await index.search({conv: None}, "many", limit=1000)
        assert (len(page.results), page.has_more) == (50, True)
        assert seqs(page)[:2] == [60, 59]

    async def test_query_without_words_finds_nothing(self, index: SearchIndex) -> None:
        conv = conversation()
        await index.add([doc(conv, 1, "!!! ??? 😀")])
        assert await index.search({conv: None}, "") == SearchPage([], False)
        assert await index.search({conv: None}, "!!! 😀") == SearchPage([], False)

    async def test_many_conversations_in_scope(self, index: SearchIndex) -> None:
        convs = [conversation() for _ in range(150)]
        # One sent_at each: left to the clock, the docs could straddle a millisecond, and a page
        # rightly ends before a split group of equal sent_at (15 hits once, not 50).
        base = current_ms() - 60_000
        await index.add([doc(c, 1, f"hello from {i}", sent_at=base + i) for i, c in enumerate(convs)])
        scopes = {c: None for c in convs[:120]}
        page = await index.search(scopes, "hello", limit=50)
        assert found(page) == [(convs[i], 1) for i in range(119, 69, -1)] and page.has_more
        words_of = {h.conversation_id: h.body for h in (await index.search(scopes, "hello 13", limit=50)).results}
        assert set(words_of.values()) == {"hello from 13"}  # 130..139 are out of scope

    async def test_ping_and_closed_index(self, index_factory: IndexFactory) -> None:
        index = await index_factory()
        await index.ping()
        await index.close()
        with pytest.raises(OperationalError):
            await index.ping()
        with pytest.raises(OperationalError):
            await index.search({conversation(): None}, "x")


class TestSqliteSearchIndex(SearchIndexContract):
    @pytest_asyncio.fixture
    async def index_factory(self, tmp_path: Path) -> AsyncIterator[IndexFactory]:
        from projections.search_sqlite import SqliteSearchIndex

        opened: list[SearchIndex] = []

        async def factory(retention_ms: int = RETENTION_MS) -> SearchIndex:
            index = SqliteSearchIndex(tmp_path / f"db{len(opened)}" / "search.sqlite3", retention_ms)
            await index.open()
            opened.append(index)
            return index

        yield factory
        for index in opened:
            await index.close()

    async def stored(self, index: Any, conv: str, seq: int) -> list[str]:
        def read(conn: Any) -> list[str]:
            row = conn.execute("SELECT id, body FROM search_docs WHERE conversation_id = ? AND seq = ?",
                               (conv, seq)).fetchone()
            if row is None:
                return []
            # The index itself: which terms it holds for this rowid (fts5vocab 'instance' needs
            # detail=full, so ask for each term of the vocabulary whether it matches this row).
            terms = [t for (t,) in conn.execute("SELECT term FROM search_vocab")]
            held = [t for t in terms if conn.execute(
                "SELECT 1 FROM search_words WHERE search_words MATCH ? AND rowid = ?", (f'"{t}"', row[0])).fetchone()]
            return [row[1], *held]

        return await index._run(read)

    async def test_erased_words_leave_the_vocabulary(self, index: Any) -> None:
        conv = conversation()
        await index.add([doc(conv, 1, "zanzibarsecret here"), doc(conv, 2, "here")])
        assert "zanzibarsecret" in await self.vocabulary(index)
        await index.remove(conv, 1)
        assert "zanzibarsecret" not in await self.vocabulary(index)
        await index.add([doc(conv, 3, "quokkaword")])
        await index.replace(conv, 3, "wombat")
        assert "quokkaword" not in await self.vocabulary(index)

    async def test_erased_body_leaves_no_bytes_in_the_file(self, index: Any) -> None:
        conv = conversation()
        await index.add([doc(conv, 1, "xylophonically unforgettable")])
        await index.remove(conv, 1)
        await index._run(lambda conn: conn.execute("PRAGMA wal_checkpoint(TRUNCATE)"))
        assert b"xylophonically" not in index.path.read_bytes()

    @staticmethod
    async def vocabulary(index: Any) -> set[str]:
        return set(await index._run(lambda conn: [t for (t,) in conn.execute("SELECT term FROM search_vocab")]))

    async def test_unusable_path_is_an_operational_error(self, tmp_path: Path) -> None:
        from projections.search_sqlite import SqliteSearchIndex

        (tmp_path / "a-file").write_text("not a directory")
        with pytest.raises(OperationalError):
            await SqliteSearchIndex(tmp_path / "a-file" / "search.sqlite3", RETENTION_MS).open()


@pytest.mark.cassandra
class TestCassandraSearchIndex(SearchIndexContract):
    sweep_deletes_rows = False

    @pytest.fixture(scope="class")
    @classmethod
    def cassandra_settings(cls, cassandra_hosts: str) -> Settings:
        keyspace = f"chat_test_{uuid.uuid4().hex[:12]}"
        return Settings(timeline_backend="cassandra", cassandra_hosts=cassandra_hosts, cassandra_keyspace=keyspace)

    @pytest_asyncio.fixture
    async def index_factory(self, cassandra_settings: Settings) -> AsyncIterator[IndexFactory]:
        from projections.search_cassandra import CassandraSearchIndex

        opened: list[SearchIndex] = []

        async def factory(retention_ms: int = RETENTION_MS) -> SearchIndex:
            index = CassandraSearchIndex(
                cassandra_settings.cassandra_host_list, cassandra_settings.cassandra_keyspace, retention_ms
            )
            await index.open()
            opened.append(index)
            return index

        yield factory
        for index in opened:
            await index.close()

    async def stored(self, index: Any, conv: str, seq: int) -> list[str]:
        ks = index.keyspace
        docs = await raw_rows(index, f"SELECT body FROM {ks}.search_docs WHERE conversation_id = %s AND seq = %s",
                              conv, seq)
        postings = await raw_rows(index, f"SELECT term, seq FROM {ks}.search_postings WHERE conversation_id = %s"
                                         " ALLOW FILTERING", conv)
        return [body for (body,) in docs] + [term for term, s in postings if s == seq]

    async def test_rows_carry_the_rest_of_their_retention_as_ttl(self, index_factory: IndexFactory) -> None:
        index: Any = await index_factory(retention_ms=10 * MINUTE_MS)
        conv, now = conversation(), current_ms()
        await index.add([doc(conv, 1, "ttl word", sent_at=now - 8 * MINUTE_MS)])
        await index.replace(conv, 1, "ttl edited")  # an edit keeps the message's expiry
        (ttl,), = await raw_rows(index, f"SELECT TTL(body) FROM {index.keyspace}.search_docs"
                                        " WHERE conversation_id = %s", conv)
        assert 115 <= ttl <= 120, ttl

    async def test_postings_are_gone_once_their_ttl_runs_out(self, index_factory: IndexFactory) -> None:
        index: Any = await index_factory(retention_ms=2_000)
        conv = conversation()
        await index.add([doc(conv, 1, "short lived", sent_at=current_ms())])
        await index.replace(conv, 1, "short edit")
        assert "=edit" in await self.stored(index, conv, 1)
        await asyncio.sleep(3.1)  # a TTL is whole seconds, rounded up: 2 s here
        assert await self.stored(index, conv, 1) == []  # not filtered out: not there

    async def test_a_long_prefix_is_checked_on_the_body(self, index: SearchIndex) -> None:
        from projections.search_cassandra import PREFIX_MAX

        conv = conversation()
        stem = "x" * PREFIX_MAX
        await index.add([doc(conv, seq, f"{stem}{'ab' if seq % 2 else 'cd'}") for seq in range(1, 40)])
        page = await index.search({conv: None}, stem + "a", limit=5)
        assert (seqs(page), page.has_more) == ([39, 37, 35, 33, 31], True)
        assert page.results[0].highlights == [(0, PREFIX_MAX + 1)]

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


async def raw_rows(index: Any, cql: str, *values: Any) -> list[tuple[Any, ...]]:
    """Rows of a plain statement on a Cassandra index's own session, no retention filter."""
    rows = await asyncio.to_thread(index._session.execute, cql, values)
    return [tuple(row) for row in rows]


def test_factory_picks_the_backend(tmp_path: Path) -> None:
    from projections.search_cassandra import CassandraSearchIndex
    from projections.search_sqlite import SqliteSearchIndex

    sqlite = make_search_index(Settings(sqlite_path=str(tmp_path / "t.sqlite3"), retention_days=1))
    assert isinstance(sqlite, SqliteSearchIndex)
    assert (sqlite.path, sqlite.retention_ms) == (tmp_path / "t-search.sqlite3", DAY_MS)
    assert search_sqlite_path(Path("/d/timelines.sqlite3")) == Path("/d/timelines-search.sqlite3")
    cassandra = make_search_index(
        Settings(timeline_backend="cassandra", cassandra_hosts="h1, h2:9043", cassandra_keyspace="chat_x")
    )
    assert isinstance(cassandra, CassandraSearchIndex)
    assert (cassandra.hosts, cassandra.keyspace) == (["h1", "h2:9043"], "chat_x")
    with pytest.raises(ValueError):
        make_search_index(Settings(timeline_backend="redis"))
