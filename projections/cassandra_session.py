"""A Cassandra session for one of the project's schemas: connect, make the schema from its
``infra/cassandra/*.cql`` file, prepare named statements, and run them with ``execute_async``
on the event loop (the driver's callbacks are handed over with ``call_soon_threadsafe``)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

from cassandra import ConsistencyLevel
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, ResponseFuture, Session
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
from cassandra.query import PreparedStatement, Statement

from chat.errors import OperationalError
from projections.timelines_cassandra import (
    _DRIVER_ERRORS, MAX_IN_FLIGHT, PROTOCOL_VERSION, REQUEST_TIMEOUT_S, SCHEMA_TIMEOUT_S, _blocking, _call_soon,
    _translate,
)
from projections.timelines_cassandra_cql import contact_point, schema_statements


class CassandraSession:
    def __init__(self, what: str, hosts: Sequence[str], keyspace: str, replication_factor: int, cql_file: str,
                 statements: Mapping[str, str], *, request_timeout_s: float = REQUEST_TIMEOUT_S,
                 cluster_options: Mapping[str, Any] | None = None) -> None:
        """``cluster_options``: more keyword arguments of the driver's ``Cluster`` (a secured
        cluster's ``auth_provider`` and ``ssl_context``: ``chat.secure.cassandra_options``)."""
        self.cluster_options = dict(cluster_options or {})
        self.what = what  # for errors: "Cassandra key store"
        self.hosts = list(hosts) or ["127.0.0.1"]
        self.keyspace = keyspace
        self.replication_factor = replication_factor
        self.cql_file = cql_file
        self.statements = dict(statements)
        self.request_timeout_s = request_timeout_s
        self._cluster: Cluster | None = None
        self._session: Session | None = None
        self.prepared: dict[str, PreparedStatement] = {}
        self._in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)

    async def open(self) -> None:
        if self._session is not None:
            return
        profile = ExecutionProfile(load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()),
                                   consistency_level=ConsistencyLevel.LOCAL_QUORUM,
                                   request_timeout=self.request_timeout_s)
        cluster = Cluster(contact_points=[contact_point(h) for h in self.hosts], protocol_version=PROTOCOL_VERSION,
                          execution_profiles={EXEC_PROFILE_DEFAULT: profile}, **self.cluster_options)
        try:
            self._session = await _blocking(cluster.connect)
            self._cluster = cluster
            cql = (resources.files("infra") / "cassandra" / self.cql_file).read_text(encoding="utf-8")
            for statement in schema_statements(self.keyspace, self.replication_factor, cql):
                await self.execute(statement, timeout=SCHEMA_TIMEOUT_S)
            for name, text in self.statements.items():
                self.prepared[name] = await _blocking(self._session.prepare, text)
        except BaseException:
            self._session, self._cluster, self.prepared = None, None, {}
            await asyncio.get_running_loop().run_in_executor(None, cluster.shutdown)
            raise

    async def close(self) -> None:
        cluster, self._cluster, self._session, self.prepared = self._cluster, None, None, {}
        if cluster is not None:
            await asyncio.get_running_loop().run_in_executor(None, cluster.shutdown)

    async def run(self, name: str, *values: Any) -> list[Any]:
        """A prepared statement by name, bound to values; its rows (one page)."""
        if self._session is None:
            raise OperationalError(f"{self.what} is not open")
        bound = self.prepared[name].bind(values)
        bound.fetch_size = None
        return await self.execute(bound)

    async def execute(self, statement: Statement | str, *, timeout: float | None = None) -> list[Any]:
        session = self._session
        if session is None:
            raise OperationalError(f"{self.what} is not open")
        loop = asyncio.get_running_loop()
        done: asyncio.Future[list[Any]] = loop.create_future()

        def settle(rows: Any = None, error: BaseException | None = None) -> None:
            if done.cancelled():
                return
            if error is not None:
                done.set_exception(error)
            else:
                done.set_result(list(rows or ()))

        async with self._in_flight:
            try:
                future: ResponseFuture = session.execute_async(statement, timeout=timeout or self.request_timeout_s)
            except _DRIVER_ERRORS as exc:
                raise _translate(exc) from exc
            future.add_callbacks(lambda rows: _call_soon(loop, settle, rows),
                                 lambda error: _call_soon(loop, settle, None, error))
            try:
                return await done
            except Exception as exc:
                raise _translate(exc) from exc
