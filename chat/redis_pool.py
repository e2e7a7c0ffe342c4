"""The one way processes open Redis: a blocking pool of bounded size.

redis-py's default pool holds 100 connections and *raises* ``MaxConnectionsError`` when a
burst wants more (seen as HTTP 500s when a thousand devices connected at once); a blocking
pool makes the burst wait its turn instead, up to ``redis_wait_s``.

With ``CHAT_REDIS_CLUSTER=true`` the client is a ``RedisCluster`` seeded by ``redis_url`` (any
one node): it routes each key to the master of its slot and, when a master dies, retries with
backoff for up to ``redis_wait_s`` while the master's replica is promoted (``FailoverCluster``:
redis-py's own retries of a single command do not wait, so they all failed within half a
second of a master's death, seconds before its replica took over). Its pools are per node,
``redis_max_connections`` each, and they do not block: a burst beyond them fails fast
(``MaxConnectionsError``). Keys that one script, transaction or ``DEL`` touches together must
share a hash tag (``chat.keys``); non-transactional pipelines may span slots.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import math
import time
from typing import Any, Callable, Sequence

import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError, NoScriptError

from chat.secure import redis_options
from chat.settings import Settings


def connect(settings: Settings) -> redis.Redis:
    """The process's Redis client: one server, or a Redis Cluster when ``redis_cluster``."""
    if settings.redis_cluster:
        return connect_cluster(settings)
    pool = redis.BlockingConnectionPool.from_url(settings.redis_url, max_connections=settings.redis_max_connections,
                                                 timeout=settings.redis_wait_s, **redis_options(settings))
    pool.connection_class = closed_write_safe(pool.connection_class)
    return redis.Redis(connection_pool=pool)


# What a write on a connection whose transport is gone raises, besides redis-py's own errors:
# uvloop (the loop of every process here) raises RuntimeError("unable to perform operation on
# <TCPTransport closed=True ...>; the handler is closed") where asyncio's own loop drops the
# write; and a connection another task disconnected meanwhile has no writer left
# (AttributeError: 'NoneType' object has no attribute 'writelines'; TypeError from asyncio's
# transport on Python 3.12: redis-py issues 3546 and 4287, fixed after its 8.1.0).
WRITE_ON_CLOSED = (RuntimeError, AttributeError, TypeError)


class _ClosedWriteIsConnectionError:
    """redis-py turns only ``OSError`` on a write into its ``ConnectionError``, so the errors of
    ``WRITE_ON_CLOSED`` escaped its retries, ``FailoverCluster``'s and the workers'
    (``streams.retry``): a worker crashed on each when a Redis Cluster master was killed (make
    test-cluster). redis-py has already dropped the connection when one is raised here; the
    command is retried on a new one like after any other broken connection."""

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        try:
            await super().send_packed_command(command, check_health)  # type: ignore[misc]
        except WRITE_ON_CLOSED as exc:
            raise RedisConnectionError(f"Error while writing to socket: {type(exc).__name__}: {exc}") from exc


@functools.cache
def closed_write_safe(connection_class: type) -> type:
    """``connection_class`` (redis-py's TCP, TLS or Unix socket connection) whose writes on a
    closed or dropped transport raise redis-py's ``ConnectionError``."""
    if issubclass(connection_class, _ClosedWriteIsConnectionError):
        return connection_class
    return type(connection_class.__name__, (_ClosedWriteIsConnectionError, connection_class), {})


PIPELINE_RETRY_S = 0.25  # redis-py's cluster pipeline sleeps this long before each retry
FIRST_DELAY_S, MAX_DELAY_S = 0.05, 0.5  # a single command's backoff (FailoverCluster)


def failover_retries(wait_s: float) -> int:
    """How many retries of a cluster pipeline (each after ``PIPELINE_RETRY_S``) cover ``wait_s``."""
    return max(1, math.ceil(wait_s / PIPELINE_RETRY_S))


def connect_cluster(settings: Settings) -> Any:
    """A ``FailoverCluster`` client (same command API as ``redis.Redis``): a dead master's
    commands and pipelines are retried for about ``redis_wait_s`` (the cluster's failover time
    must be shorter: ``cluster-node-timeout`` plus an election), re-reading the slot map on each."""
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry

    retry = Retry(ExponentialBackoff(cap=MAX_DELAY_S, base=FIRST_DELAY_S), failover_retries(settings.redis_wait_s),
                  supported_errors=_failover_errors())
    return _failover_class().from_url(settings.redis_url, max_connections=settings.redis_max_connections,
                                      retry=retry, socket_connect_timeout=1.0, wait_s=settings.redis_wait_s,
                                      **redis_options(settings))


def _failover_errors() -> tuple[type[Exception], ...]:
    """What a master's death or a slot's move looks like to a client, until the cluster heals."""
    from redis.exceptions import (ClusterDownError, ConnectionError, SlotNotCoveredError, TimeoutError,
                                  TryAgainError)
    return ConnectionError, TimeoutError, ClusterDownError, TryAgainError, SlotNotCoveredError


@functools.cache
def _failover_class() -> type:
    from redis.asyncio.cluster import RedisCluster

    class FailoverCluster(RedisCluster):  # type: ignore[misc]
        """A ``RedisCluster`` whose single commands ride out a failover: redis-py retries a
        command that met a dead master at once, re-reading the slot map each time, so every try
        is spent before the replica is promoted. Here those tries are repeated with backoff
        (0.05 s doubling to 0.5 s) until ``wait_s`` has passed since the command began; then the
        last error is raised. Which errors are retried, and so which commands may run twice,
        is redis-py's own choice (a command whose connection broke after Redis ran it is sent
        again, as redis-py always does); only the waiting is added. Pipelines wait already
        (``PIPELINE_RETRY_S`` before each of ``failover_retries`` tries)."""

        def __init__(self, *args: Any, wait_s: float = 5.0, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.failover_wait_s = wait_s
            # RedisCluster takes no connection class: its nodes, now and discovered later, are
            # made from this one dict (shared with its NodesManager).
            safe = closed_write_safe(self.connection_kwargs["connection_class"])
            self.connection_kwargs["connection_class"] = safe
            for node in self.startup_nodes:
                node.connection_class = safe

        async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
            deadline, delay = time.monotonic() + self.failover_wait_s, FIRST_DELAY_S
            while True:
                try:
                    return await super().execute_command(*args, **kwargs)
                except _failover_errors():
                    if time.monotonic() + delay > deadline:
                        raise
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, MAX_DELAY_S)

    return FailoverCluster


class Script:
    """A Lua script run with EVALSHA, on its own or queued on a pipeline.

    redis-py's registered scripts make every pipeline that holds one ask ``SCRIPT EXISTS``
    first: a second round trip per pipeline, on the hottest paths (each send, each projected
    batch). Here a pipeline sends EVALSHA alone (``queue``) and ``run_pipeline`` loads the script
    and builds and runs the pipeline again when Redis answers NOSCRIPT (a restarted Redis has
    lost its script cache): whatever a pipeline with a script holds must be safe to run twice.
    """

    def __init__(self, client: redis.Redis, source: str) -> None:
        self.client = client
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()
        self._direct = client.register_script(source)  # EVALSHA, then EVAL on NOSCRIPT

    async def __call__(self, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        return await self._direct(keys=keys, args=args)

    def queue(self, pipe: Any, keys: Sequence[Any], args: Sequence[Any]) -> None:
        # execute_command, not evalsha: redis-py's cluster pipeline blocks its evalsha method,
        # though it routes a queued EVALSHA by its keys like any other command.
        pipe.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)

    async def load(self) -> None:
        await self.client.script_load(self.source)


async def run_pipeline(client: redis.Redis, build: Callable[[Any], Any], *scripts: Script) -> list[Any]:
    """Queue commands with ``build(pipe)`` on a pipeline (no transaction) and execute it; when a
    script was missing, load ``scripts`` and do it all once more."""
    for attempt in (1, 2):
        pipe = client.pipeline(transaction=False)
        build(pipe)
        try:
            return await pipe.execute()
        except NoScriptError:
            if attempt == 2:
                raise
            for script in scripts:
                await script.load()
    raise AssertionError("unreachable")


# KEYS: hashes. Returns each one's HGETALL (a flat field/value list), in KEYS' order.
_HGETALL_MANY = "local out = {} for i, k in ipairs(KEYS) do out[i] = redis.call('HGETALL', k) end return out"
# The same for mostly empty hashes: only the non-empty ones, each as its index in KEYS and its list.
_HGETALL_SPARSE = ("local out = {} for i, k in ipairs(KEYS) do local h = redis.call('HGETALL', k) "
                   "if #h > 0 then out[#out + 1] = i out[#out + 1] = h end end return out")
_SHA = {s: hashlib.sha1(s.encode()).hexdigest() for s in (_HGETALL_MANY, _HGETALL_SPARSE)}
HGETALL_CHUNK = 2_000  # keys per script call: a longer one would hold Redis for longer at a time


async def hgetall_many(client: Any, keys: Sequence[str], sparse: bool = False) -> list[dict[bytes, bytes]]:
    """Every hash of ``keys``, in order ({} for a missing one), in one round trip.

    On one Redis server this is a script call per ``HGETALL_CHUNK`` keys, all sent at once (the
    client packs and parses one chunk while Redis runs another): a pipeline of one HGETALL per
    key cost the client about 9 us of Python per key (building and parsing each command), the
    script about 1.3. ``sparse``: most hashes are expected empty (push registrations of a big
    group's members), so only the non-empty ones come back. A Redis Cluster keeps the pipeline:
    the keys live in different slots, which one script may not touch."""
    if not keys:
        return []
    if not isinstance(client, redis.Redis):  # RedisCluster
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(key)
        return list(await pipe.execute())
    script = _HGETALL_SPARSE if sparse else _HGETALL_MANY

    async def chunk(part: Sequence[str]) -> Any:
        try:
            return await client.execute_command("EVALSHA", _SHA[script], len(part), *part)
        except NoScriptError:
            return await client.execute_command("EVAL", script, len(part), *part)

    parts = [keys[i:i + HGETALL_CHUNK] for i in range(0, len(keys), HGETALL_CHUNK)]
    replies = await asyncio.gather(*map(chunk, parts)) if len(parts) > 1 else [await chunk(parts[0])]
    if not sparse:
        return [dict(zip(flat[::2], flat[1::2])) for raw in replies for flat in raw]
    out: list[dict[bytes, bytes]] = [{} for _ in keys]
    for offset, raw in zip(range(0, len(keys), HGETALL_CHUNK), replies):
        for i in range(0, len(raw), 2):
            flat = raw[i + 1]
            out[offset + raw[i] - 1] = dict(zip(flat[::2], flat[1::2]))
    return out
