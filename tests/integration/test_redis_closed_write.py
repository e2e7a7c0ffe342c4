"""A Redis connection whose transport the loop has closed (a reset from a dying server) fails
as redis-py's ``ConnectionError``, on uvloop as on asyncio's own loop: the cluster client
retries it, and on one Redis it is the ``RedisError`` the workers retry and the gateway answers
``unavailable`` for.

Found by ``make test-cluster``: when a Redis Cluster master was killed, a worker's write on a
connection its peer had reset raised uvloop's ``RuntimeError`` ("the handler is closed"), which
redis-py passes through; it escaped every retry and crashed the worker. Each test runs its
client on uvloop, the loop of the gateways and workers, against a real Redis; the transport is
aborted as uvloop does when the peer resets it."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import uvloop
import redis.asyncio as redis

from chat import redis_pool
from chat.settings import Settings
from infra.redis_cluster import RedisCluster


def abort_free_connections(connections: Any) -> int:
    """Abort the transport under each connected connection, as uvloop does on a reset."""
    aborted = 0
    for conn in connections:
        if conn._writer is not None:
            conn._writer.transport.abort()
            aborted += 1
    return aborted


async def write_after_reset(client: Any, connections: Any) -> str:
    """A key written, every connection reset, the key written again; the key."""
    key = f"closed-write-{uuid.uuid4().hex[:8]}"
    await client.set(key, "before")
    assert abort_free_connections(connections()) >= 1
    await client.set(key, "after")
    return key


def test_a_write_on_a_reset_connection_is_a_connection_error(stack):
    async def run() -> bytes | None:
        client = redis_pool.connect(Settings(redis_url=stack.redis_url))
        try:
            key = f"closed-write-{uuid.uuid4().hex[:8]}"
            await client.set(key, "before")
            assert abort_free_connections(client.connection_pool._available_connections) == 1
            with pytest.raises(redis.ConnectionError, match="handler is closed"):
                await client.set(key, "after")
            await client.set(key, "after")  # on a new connection
            return await client.get(key)
        finally:
            await client.aclose()

    assert uvloop.run(run()) == b"after"


def test_without_it_uvloop_raises_runtime_error(stack):
    """What the clients are kept from: redis-py's own connection lets uvloop's error through."""
    async def run() -> None:
        client = redis.Redis.from_url(stack.redis_url)
        try:
            await write_after_reset(client, lambda: client.connection_pool._available_connections)
        finally:
            await client.aclose()

    with pytest.raises(RuntimeError, match="handler is closed"):
        uvloop.run(run())


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory):
    with RedisCluster(tmp_path_factory.mktemp("redis-closed-write")) as cluster:
        yield cluster


def test_a_cluster_write_on_a_reset_connection_is_retried(redis_cluster):
    async def run() -> bytes | None:
        client = redis_pool.connect(Settings(redis_url=redis_cluster.url, redis_cluster=True))
        try:
            nodes = lambda: [c for node in client.get_nodes() for c in node._connections]  # noqa: E731
            return await client.get(await write_after_reset(client, nodes))
        finally:
            await client.aclose()

    assert uvloop.run(run()) == b"after"
