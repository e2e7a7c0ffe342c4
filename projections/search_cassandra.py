"""The Cassandra search backend: an inverted index of our own, per conversation and term.

The schema is ``infra/cassandra/search.cql`` (why not a storage-attached index is said there).
A message is a row of ``search_docs`` and, for each of its distinct words ``w``, a row in the
partitions ``(conversation, '=' + w)`` and ``(conversation, '>' + p)`` for every prefix ``p``
of ``w`` up to ``PREFIX_MAX`` code points, clustered newest first. A search reads, for each
conversation in scope, the first rows of each query term's partition and intersects them,
reading further only where the intersection is too short; the newest candidates of all
conversations are then checked against their bodies (which also makes the highlights), so a
longer prefix than the index holds is still exact.

Writes keep the order that makes a replay after a crash complete them: postings before the
document on ``add``; stale postings deleted, new ones written, then the document on
``replace``; postings deleted before the document on ``remove``. Every row carries the rest of
its message's retention as TTL; reads also bound ``sent_at``, so nothing expired is found.
Statements run with ``execute_async`` on the driver's threads, handed to the event loop as in
``timelines_cassandra.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from cassandra import ConsistencyLevel

from projections.cassandra_session import CassandraSession
from projections.search import DEFAULT_LIMIT, SearchDoc, SearchHit, SearchPage, SearchPlan, index_words, search_plan
from projections.timelines import current_ms
from projections.timelines_cassandra import MAX_TTL_S, REQUEST_TIMEOUT_S, SCHEMA_TIMEOUT_S
from projections.timelines_cassandra_cql import checked_keyspace

PREFIX_MAX = 12  # code points of a prefix term; a longer query prefix is checked on the body
GROWTH = 4  # how much further a conversation's term lists are read when they fall short


def terms(body: str) -> set[str]:
    """The posting terms of a body: '=' + each word, '>' + each of its prefixes."""
    found = set()
    for word in index_words(body):
        found.add("=" + word)
        found.update(">" + word[:n] for n in range(1, min(len(word), PREFIX_MAX) + 1))
    return found


def statements_cql(keyspace: str) -> dict[str, str]:
    ks = checked_keyspace(keyspace)
    return {
        "insert_doc": f"INSERT INTO {ks}.search_docs (conversation_id, seq, sender_id, body, sent_at)"
        " VALUES (?, ?, ?, ?, ?) USING TTL ?",
        "doc": f"SELECT seq, sender_id, body, sent_at FROM {ks}.search_docs WHERE conversation_id = ? AND seq = ?",
        "doc_seqs": f"SELECT seq FROM {ks}.search_docs WHERE conversation_id = ? AND seq >= ? AND seq <= ?",
        "delete_doc": f"DELETE FROM {ks}.search_docs WHERE conversation_id = ? AND seq = ?",
        "insert_posting": f"INSERT INTO {ks}.search_postings (conversation_id, term, sent_at, seq)"
        " VALUES (?, ?, ?, ?) USING TTL ?",
        "delete_posting": f"DELETE FROM {ks}.search_postings"
        " WHERE conversation_id = ? AND term = ? AND sent_at = ? AND seq = ?",
        "postings": f"SELECT sent_at, seq FROM {ks}.search_postings"
        " WHERE conversation_id = ? AND term = ? AND sent_at > ? AND sent_at < ? LIMIT ?",
        "ping": "SELECT release_version FROM system.local",
    }


class CassandraSearchIndex:
    """``SearchIndex`` on Cassandra (see ``projections.search``)."""

    def __init__(
        self,
        hosts: Sequence[str],
        keyspace: str,
        retention_ms: int,
        replication_factor: int = 1,
        *,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
        cluster_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.keyspace = checked_keyspace(keyspace)
        self.retention_ms = retention_ms
        self.cassandra = CassandraSession("Cassandra search index", hosts, self.keyspace, replication_factor,
                                          "search.cql", statements_cql(self.keyspace),
                                          request_timeout_s=request_timeout_s, cluster_options=cluster_options)
        self.hosts = self.cassandra.hosts
        self._run = self.cassandra.run
        self._execute = self.cassandra.execute

    # Lifecycle

    async def open(self) -> None:
        await self.cassandra.open()
        self.cassandra.prepared["ping"].consistency_level = ConsistencyLevel.LOCAL_ONE

    async def close(self) -> None:
        await self.cassandra.close()

    @property
    def _session(self) -> Any:
        """The driver's session (tests read the tables with it)."""
        return self.cassandra._session

    async def ping(self) -> None:
        await self._run("ping")

    # Writes

    async def add(self, docs: Sequence[SearchDoc]) -> None:
        now = current_ms()
        fresh: dict[tuple[str, int], SearchDoc] = {}
        for d in docs:  # the first of a batch wins; expired ones are never stored
            if d.sent_at + self.retention_ms > now:
                fresh.setdefault((d.conversation_id, d.seq), d)
        stored = await self._stored_keys(list(fresh.values()))
        await asyncio.gather(*(self._add(d, now) for key, d in fresh.items() if key not in stored))

    async def replace(self, conversation_id: str, seq: int, body: str) -> None:
        doc = await self._doc(conversation_id, seq)
        if doc is None or doc.body == body:
            return
        old, new = terms(doc.body), terms(body)
        await self._postings("delete_posting", doc, old - new)
        ttl = self._ttl_s(doc.sent_at, current_ms())
        await self._postings("insert_posting", doc, new - old, ttl)
        await self._run("insert_doc", conversation_id, seq, doc.sender_id, body, doc.sent_at, ttl)

    async def remove(self, conversation_id: str, seq: int) -> None:
        doc = await self._doc(conversation_id, seq)
        if doc is None:
            return
        await self._postings("delete_posting", doc, terms(doc.body))
        await self._run("delete_doc", conversation_id, seq)

    async def clear(self) -> None:
        for table in ("search_postings", "search_docs"):
            await self._execute(f"TRUNCATE {self.keyspace}.{table}", timeout=SCHEMA_TIMEOUT_S)

    async def count(self) -> int:
        rows = await self._execute(f"SELECT COUNT(*) FROM {self.keyspace}.search_docs", timeout=SCHEMA_TIMEOUT_S)
        return int(rows[0][0])

    async def sweep(self, now_ms: int | None = None) -> int:
        return 0  # rows expire by TTL

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
        query_terms = ["=" + w for w in plan.query.whole] + [">" + plan.query.prefix[:PREFIX_MAX]]
        wanted = plan.fetch
        while True:
            found = await asyncio.gather(*(self._candidates(plan, c, query_terms, wanted) for c in plan.scopes))
            exhausted = all(done for _, done in found)
            candidates = sorted(
                ((sent_at, c, seq) for c, (keys, _) in zip(plan.scopes, found) for sent_at, seq in keys), reverse=True
            )
            # Each conversation that has more gave `wanted`: the first `wanted` of all are sure.
            hits = await self._check(plan, candidates if exhausted else candidates[:wanted])
            if len(hits) >= plan.fetch or exhausted:
                return plan.finish(hits)
            wanted *= GROWTH  # some candidates did not hold (a prefix longer than PREFIX_MAX)

    async def _check(self, plan: SearchPlan, candidates: list[tuple[int, str, int]]) -> list[SearchHit]:
        """The hits among candidates (newest first), read from their bodies until ``fetch``."""
        hits: list[SearchHit] = []
        for start in range(0, len(candidates), plan.fetch):
            chunk = candidates[start : start + plan.fetch]
            docs = await asyncio.gather(*(self._doc(c, seq) for _, c, seq in chunk))
            hits += [h for d in docs if d is not None and (h := plan.hit(*d.hit_fields())) is not None]
            if len(hits) >= plan.fetch:
                break
        return hits

    async def _candidates(
        self, plan: SearchPlan, conversation_id: str, query_terms: list[str], wanted: int
    ) -> tuple[list[tuple[int, int]], bool]:
        """The newest ``wanted`` ``(sent_at, seq)`` of a conversation in every term's postings
        and within its scope, and whether there are no more."""
        highest = plan.scopes[conversation_id]
        rows = wanted
        while True:
            lists = await asyncio.gather(
                *(self._run("postings", conversation_id, t, plan.sent_after, plan.sent_before, rows) for t in query_terms)
            )
            keys = [{(r[0], r[1]) for r in found} for found in lists]
            # A list cut at `rows` is complete down to its last key; the intersection is
            # complete down to the highest of those.
            cut = [min(k) for k, found in zip(keys, lists) if len(found) == rows]
            floor = max(cut) if cut else None
            common = sorted(
                (k for k in set.intersection(*keys) if k[1] <= highest and (floor is None or k >= floor)), reverse=True
            )
            if floor is None:
                return common, True
            if len(common) >= wanted:
                return common[:wanted], False
            rows *= GROWTH

    # Helpers

    async def _add(self, d: SearchDoc, now: int) -> None:
        ttl = self._ttl_s(d.sent_at, now)
        await self._postings("insert_posting", _Doc(d.conversation_id, d.seq, d.sender_id, d.body, d.sent_at),
                             terms(d.body), ttl)
        await self._run("insert_doc", d.conversation_id, d.seq, d.sender_id, d.body, d.sent_at, ttl)

    async def _postings(self, name: str, doc: _Doc, which: set[str], *ttl: int) -> None:
        await asyncio.gather(*(self._run(name, doc.conversation_id, t, doc.sent_at, doc.seq, *ttl) for t in which))

    async def _doc(self, conversation_id: str, seq: int) -> _Doc | None:
        rows = await self._run("doc", conversation_id, seq)
        if not rows:
            return None
        _, sender_id, body, sent_at = rows[0]
        return _Doc(conversation_id, seq, sender_id, body, sent_at)

    async def _stored_keys(self, docs: list[SearchDoc]) -> set[tuple[str, int]]:
        spans: dict[str, tuple[int, int]] = {}
        for d in docs:
            low, high = spans.get(d.conversation_id, (d.seq, d.seq))
            spans[d.conversation_id] = (min(low, d.seq), max(high, d.seq))
        convs = list(spans)
        results = await asyncio.gather(*(self._run("doc_seqs", c, *spans[c]) for c in convs))
        return {(c, row[0]) for c, rows in zip(convs, results) for row in rows}

    def _ttl_s(self, sent_at: int, now: int) -> int:
        remaining_ms = sent_at + self.retention_ms - now
        return min(MAX_TTL_S, max(1, -(-remaining_ms // 1000)))  # rounded up, at least 1


class _Doc:
    """A stored message."""

    __slots__ = ("conversation_id", "seq", "sender_id", "body", "sent_at")

    def __init__(self, conversation_id: str, seq: int, sender_id: str, body: str, sent_at: int) -> None:
        self.conversation_id, self.seq, self.sender_id = conversation_id, seq, sender_id
        self.body, self.sent_at = body, sent_at

    def hit_fields(self) -> tuple[str, int, str, int]:
        return (self.conversation_id, self.seq, self.body, self.sent_at)

