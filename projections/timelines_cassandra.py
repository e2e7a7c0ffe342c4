"""The Cassandra timeline backend: one partition per conversation, clustered by seq.

The schema is ``infra/cassandra/schema.cql``; ``open()`` runs it with the configured
keyspace (the CQL text is in ``timelines_cassandra_cql.py``). Every query is a prepared
statement run with ``execute_async``, whose ``ResponseFuture`` callbacks (called on the
driver's I/O threads) are handed to the event loop with ``call_soon_threadsafe``.

Rows expire by TTL (what is left of the retention when written); reads also
filter on ``sent_at``, so a row past retention is never returned even before its
TTL has run out.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from cassandra import ConsistencyLevel, DriverException, ProtocolVersion, RequestValidationException
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable, ResponseFuture, Session
from cassandra.connection import ConnectionException
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
from cassandra.query import PreparedStatement, Statement

from chat.errors import OperationalError, PersistenceError
from dataclasses import replace

from projections.timelines import (
    ChangePage, Page, StoredChange, TimelineMessage, current_ms, page_query, reply_preview,
)
from projections.timelines_cassandra_cql import checked_keyspace, contact_point, schema_statements, statements_cql

T = TypeVar("T")

# Requests in flight per store. Without a cap, a batch of thousands could use up a
# connection's stream ids, and the driver would then block the event loop's thread.
MAX_IN_FLIGHT = 128
MAX_TTL_S = 630_720_000  # Cassandra's upper limit for a TTL (20 years)
REQUEST_TIMEOUT_S = 10.0
SCHEMA_TIMEOUT_S = 60.0  # DDL waits for schema agreement across the cluster
# Cassandra 4.0 and later speak v5. Left unset, the driver offers its DSE versions first and
# downgrades with a warning, one refused handshake at a time.
PROTOCOL_VERSION = ProtocolVersion.V5
PAGE_ROWS = 5_000  # rows per page of the one read without a LIMIT (a conversation's stored seqs)
_DRIVER_ERRORS = (DriverException, NoHostAvailable, ConnectionException)

class CassandraTimelineStore:
    """``TimelineStore`` on Cassandra (see ``projections.timelines``).

    Appends are first-write-wins without lightweight transactions: they read
    which seqs of the batch are stored already and insert only the others. That
    holds because one writer at a time owns a conversation (the worker for its
    partition); a plain insert of the same message again would be harmless too.
    """

    def __init__(
        self,
        hosts: Sequence[str],
        keyspace: str,
        retention_ms: int,
        replication_factor: int = 1,
        *,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
        protocol_version: int = PROTOCOL_VERSION,
        cluster_options: Mapping[str, Any] | None = None,
    ) -> None:
        """``cluster_options``: more keyword arguments of the driver's ``Cluster`` (a secured
        cluster's ``auth_provider`` and ``ssl_context``: ``chat.secure.cassandra_options``)."""
        self.cluster_options = dict(cluster_options or {})
        self.hosts = list(hosts) or ["127.0.0.1"]
        self.keyspace = checked_keyspace(keyspace)
        self.retention_ms = retention_ms
        self.replication_factor = replication_factor
        self.request_timeout_s = request_timeout_s
        self.protocol_version = protocol_version
        self._cluster: Cluster | None = None
        self._session: Session | None = None
        self._prepared: dict[str, PreparedStatement] = {}
        self._in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)

    # Lifecycle

    async def open(self) -> None:
        if self._session is not None:
            return
        profile = ExecutionProfile(
            # Send each statement to a replica of its conversation, in the local data centre
            # (the one of the contact points, as they are all expected to be local).
            load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()),
            consistency_level=ConsistencyLevel.LOCAL_QUORUM,
            request_timeout=self.request_timeout_s,
        )
        cluster = Cluster(
            contact_points=[contact_point(h) for h in self.hosts],
            protocol_version=self.protocol_version,
            execution_profiles={EXEC_PROFILE_DEFAULT: profile},
            **self.cluster_options,
        )
        try:
            session: Session = await _blocking(cluster.connect)
            self._cluster, self._session = cluster, session
            for statement in schema_statements(self.keyspace, self.replication_factor):
                await self._execute(statement, timeout=SCHEMA_TIMEOUT_S)
            for name, cql in statements_cql(self.keyspace).items():
                self._prepared[name] = await _blocking(session.prepare, cql)
            self._prepared["ping"].consistency_level = ConsistencyLevel.LOCAL_ONE
        except BaseException:
            self._session, self._cluster, self._prepared = None, None, {}
            await asyncio.get_running_loop().run_in_executor(None, cluster.shutdown)
            raise

    async def close(self) -> None:
        cluster, self._cluster, self._session, self._prepared = self._cluster, None, None, {}
        if cluster is not None:
            await asyncio.get_running_loop().run_in_executor(None, cluster.shutdown)

    async def ping(self) -> None:
        await self._run("ping")

    # Reads and writes

    async def append(self, messages: Sequence[TimelineMessage]) -> None:
        now = current_ms()
        fresh: dict[tuple[str, int], TimelineMessage] = {}
        for m in messages:  # the first of a batch wins too; expired ones are never stored
            if m.sent_at + self.retention_ms > now:
                fresh.setdefault((m.conversation_id, m.seq), m)
        if not fresh:
            return
        stored = await self._stored_keys(list(fresh.values()))
        by_conversation: dict[str, list[TimelineMessage]] = {}
        for key, m in sorted(fresh.items()):
            if key not in stored:
                by_conversation.setdefault(m.conversation_id, []).append(m)
        await asyncio.gather(*(self._insert_in_order(ms, now) for ms in by_conversation.values()))

    async def _insert_in_order(self, messages: Sequence[TimelineMessage], now: int) -> None:
        """One conversation's new messages one after the other, by seq (conversations go side by
        side): a reader never sees seq n+1 stored while n is still being written or retried. A
        device's sync that read n+1 without n was replayed n+1, and the gateway then dropped n's
        live frame as already replayed: a gap the device kept (found by make test-cluster)."""
        for m in messages:
            await self._run("insert", *self._insert_values(m, now))

    async def overwrite(self, messages: Sequence[TimelineMessage]) -> int:
        """Write every unexpired message over what is stored at its key (a rebuild's repair);
        returns how many were written."""
        now = current_ms()
        fresh = [m for m in messages if m.sent_at + self.retention_ms > now]
        await asyncio.gather(*(self._run("insert", *self._insert_values(m, now)) for m in fresh))
        return len(fresh)

    async def stored_seqs(self, conversation_id: str, low: int, high: int) -> set[int]:
        """The seqs stored in ``low..high``, read in pages: a whole conversation may be asked."""
        return {row[0] for row in await self._run("stored_seqs", conversation_id, low, high, page_rows=PAGE_ROWS)}

    async def delete(self, conversation_id: str, seqs: Sequence[int]) -> None:
        await asyncio.gather(*(self._run("delete", conversation_id, seq) for seq in seqs))

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
        name = "page_newest_first" if q.newest_first else "page_oldest_first"
        rows = await self._run(name, conversation_id, q.lower, q.upper, q.sent_after, q.fetch)
        return q.finish(await self._with_replies([_message(row) for row in rows], q.sent_after))

    async def messages(self, conversation_id: str, seqs: Sequence[int],
                       now_ms: int | None = None) -> dict[int, TimelineMessage]:
        visible_after = (current_ms() if now_ms is None else now_ms) - self.retention_ms
        found = await self._raw_messages(conversation_id, seqs, visible_after)
        return {m.seq: m for m in await self._with_replies(list(found.values()), visible_after)}

    async def apply_changes(self, messages: Sequence[TimelineMessage], changes: Sequence[StoredChange]) -> None:
        now = current_ms()
        writes = []
        for m in messages:  # one writer per conversation (the partition's projector): no read-before-write race
            writes.append(self._run("update_state", self._ttl(m.sent_at, now), m.body, _json(m.media),
                                    _json(m.mentions), m.edited_at or 0, m.deleted, _json(m.reactions),
                                    m.change_seq, m.conversation_id, m.seq))
        for c in changes:
            writes.append(self._run("insert_change", c.conversation_id, c.change_seq, c.seq, c.change, c.by,
                                    c.changed_at, c.sent_at, self._ttl(c.sent_at, now)))
        await asyncio.gather(*writes)

    async def changes(self, conversation_id: str, *, after_change_seq: int = 0, limit: int = 50,
                      now_ms: int | None = None) -> ChangePage:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        visible_after = (current_ms() if now_ms is None else now_ms) - self.retention_ms
        entries: list[StoredChange] = []
        cursor = after_change_seq
        while len(entries) <= limit:  # entries of expired messages (TTL not yet run) are skipped
            rows = await self._run("changes", conversation_id, cursor, limit + 1)
            entries += [StoredChange(conversation_id, r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows
                        if r[5] > visible_after]
            if len(rows) <= limit:
                break
            cursor = rows[-1][0]
        messages = await self.messages(conversation_id, [e.seq for e in entries[:limit + 1]], now_ms)
        pairs = [(e, messages[e.seq]) for e in entries if e.seq in messages]
        return ChangePage(changes=pairs[:limit], has_more=len(pairs) > limit)

    async def last_change_seq(self, conversation_id: str) -> int:
        rows = await self._run("last_change_seq", conversation_id)
        return int(rows[0][0]) if rows else 0

    async def _raw_messages(self, conversation_id: str, seqs: Sequence[int],
                            visible_after: int) -> dict[int, TimelineMessage]:
        wanted = sorted(set(seqs))
        chunks = [wanted[i:i + 100] for i in range(0, len(wanted), 100)]
        results = await asyncio.gather(*(self._run("messages", conversation_id, chunk) for chunk in chunks))
        return {m.seq: m for rows in results for m in map(_message, rows) if m.sent_at > visible_after}

    async def _with_replies(self, messages: list[TimelineMessage], visible_after: int) -> list[TimelineMessage]:
        """Fill in each reply's preview from the replied-to message as it is now."""
        wanted: dict[str, set[int]] = {}
        for m in messages:
            if m.reply_to is not None:
                wanted.setdefault(m.conversation_id, set()).add(m.reply_to["seq"])
        if not wanted:
            return messages
        conversations = list(wanted)
        found = await asyncio.gather(*(self._raw_messages(c, sorted(wanted[c]), visible_after) for c in conversations))
        by_key = {(c, seq): m for c, ms in zip(conversations, found) for seq, m in ms.items()}
        return [m if m.reply_to is None else replace(m, reply_to=reply_preview(
            m.reply_to["seq"], m.reply_to["sender_id"], by_key.get((m.conversation_id, m.reply_to["seq"]))))
            for m in messages]

    def _ttl(self, sent_at: int, now: int) -> int:
        remaining_ms = sent_at + self.retention_ms - now
        return min(MAX_TTL_S, max(1, -(-remaining_ms // 1000)))

    async def last_seq(self, conversation_id: str) -> int:
        rows = await self._run("last_seq", conversation_id)
        return int(rows[0][0]) if rows else 0

    async def sweep(self, now_ms: int | None = None) -> int:
        return 0  # rows expire by TTL

    # Helpers

    def _insert_values(self, m: TimelineMessage, now: int) -> tuple[Any, ...]:
        ttl_s = self._ttl(m.sent_at, now)  # rounded up, at least 1
        # Absent values are stored as '', 0 or false, not null: a null bound in an INSERT is a
        # tombstone, one in every such row, which each read counts against tombstone_warn/failure_threshold.
        reply = m.reply_to
        return (m.conversation_id, m.seq, m.message_id, m.sender_id, m.client_msg_id, m.body, _json(m.media),
                m.sent_at, 0 if reply is None else reply["seq"], "" if reply is None else reply["sender_id"],
                _json(m.mentions), m.edited_at or 0, m.deleted, _json(m.reactions), m.change_seq, ttl_s)

    async def _stored_keys(self, messages: list[TimelineMessage]) -> set[tuple[str, int]]:
        """Which ``(conversation_id, seq)`` of ``messages`` are stored: one slice read per conversation."""
        spans: dict[str, tuple[int, int]] = {}
        for m in messages:
            low, high = spans.get(m.conversation_id, (m.seq, m.seq))
            spans[m.conversation_id] = (min(low, m.seq), max(high, m.seq))
        conversations = list(spans)
        results = await asyncio.gather(*(self._run("stored_seqs", c, *spans[c]) for c in conversations))
        return {(c, row[0]) for c, rows in zip(conversations, results) for row in rows}

    async def _run(self, name: str, *values: Any, page_rows: int | None = None) -> list[Any]:
        """A prepared statement's rows: in one response (every query has a LIMIT or reads one
        batch's slice), or in pages of ``page_rows``."""
        if self._session is None:
            raise OperationalError("Cassandra timeline store is not open")
        bound = self._prepared[name].bind(values)
        bound.fetch_size = page_rows
        return await self._execute(bound)

    async def _execute(self, statement: Statement | str, *, timeout: float | None = None) -> list[Any]:
        """Run one statement with ``execute_async``; all its rows (every page) once the driver answers."""
        session = self._session
        if session is None:
            raise OperationalError("Cassandra timeline store is not open")
        loop = asyncio.get_running_loop()
        done: asyncio.Future[list[Any]] = loop.create_future()

        def settle(rows: Any = None, error: BaseException | None = None) -> None:
            if done.cancelled():
                return
            if error is not None:
                done.set_exception(error)
            else:
                done.set_result(list(rows) if rows is not None else [])

        rows_read: list[Any] = []

        def on_rows(rows: Any) -> None:  # on a driver thread, once per page
            rows_read.extend(rows or ())
            if future.has_more_pages:
                future.start_fetching_next_page()  # calls on_rows or on_error again
            else:
                _call_soon(loop, settle, rows_read)

        def on_error(error: BaseException) -> None:  # on a driver thread
            _call_soon(loop, settle, None, error)

        async with self._in_flight:
            try:
                future: ResponseFuture = session.execute_async(statement, timeout=timeout or self.request_timeout_s)
            except _DRIVER_ERRORS as exc:
                raise _translate(exc) from exc
            # Runs on_rows/on_error at once, here, if the request is already done.
            future.add_callbacks(on_rows, on_error)
            try:
                return await done
            except Exception as exc:  # what the driver reported for this request (its protocol
                raise _translate(exc) from exc  # errors are not all DriverExceptions)


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: Any) -> None:
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:  # the loop has closed; nobody is waiting any more
        pass


async def _blocking(fn: Callable[..., T], *args: Any) -> T:
    """Run a blocking driver call (connect, prepare) on a thread, errors translated."""
    try:
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)
    except _DRIVER_ERRORS as exc:
        raise _translate(exc) from exc


def _translate(exc: BaseException) -> PersistenceError:
    """Driver errors as the project's: a rejected statement is a bug, the rest are outages."""
    if isinstance(exc, PersistenceError):
        return exc
    if isinstance(exc, RequestValidationException):  # syntax, invalid request, unauthorized, schema
        return PersistenceError(f"Cassandra rejected a statement: {exc}")
    return OperationalError(f"Cassandra unavailable: {exc}")


def _json(value: Any) -> str:
    """A JSON column: '' for none (null in rows of earlier versions reads the same)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")) if value else ""


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
        media=json.loads(media) if media else None,  # '', or null in rows of earlier versions
        sent_at=sent_at,
        # The preview's body is filled in by _with_replies.
        reply_to={"seq": reply_to, "sender_id": reply_sender, "body": ""} if reply_to else None,
        mentions=json.loads(mentions) if mentions else [],
        edited_at=edited_at or None,
        deleted=bool(deleted),
        reactions=json.loads(reactions) if reactions else [],
        change_seq=change_seq or 0,
    )
