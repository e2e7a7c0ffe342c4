"""A ``sync`` that Redis fails under (PROTOCOL.md: no gap between sync and live delivery).

The gateway reads the user's conversations from Redis before it replays their history. When
that read failed, the device got an ``error`` frame with no ``ref`` (it cannot tell which
request failed), no ``synced``, and its socket stayed open with live frames flowing again: it
held messages past a gap it never learnt of (found by ``make test-cluster``: one device of nine
never converged after a Redis master was killed). Now the gateway closes the socket with 1013
(try again later): the device reconnects and syncs, as every client does after a close."""

from __future__ import annotations

import asyncio

import pytest

from gateway.registry import CLOSE_RETRY
from infra.services import Redis, free_port
from tests.client import Client, uid
from tests.support import System


@pytest.fixture(scope="module")
def redis(tmp_path_factory):
    """A Redis of this module's own: the test stops it under a running gateway."""
    base = tmp_path_factory.mktemp("sync-redis")
    with Redis(free_port(), base / "data", log_path=base / "redis.log") as server:
        yield server


@pytest.fixture(scope="module")
def system(stack, redis, tmp_path_factory):
    system = System(stack, tmp_path_factory.mktemp("e2e-sync-redis"), CHAT_REDIS_URL=redis.url,
                    CHAT_REDIS_WAIT_S="1")
    system.start_worker()
    system.start_gateway()
    yield system
    system.stop()


async def test_a_sync_redis_fails_under_closes_the_socket_and_the_next_sync_catches_up(system, redis, session):
    url = system.url()
    alice = await Client.sign_in(session, url, uid("alice"))
    bob = await Client.sign_in(session, url, uid("bob"))
    cid = (await alice.create_group("sync under failure", [bob.user_id]))["conversation_id"]
    status, ack = await alice.call("POST", f"/v1/conversations/{cid}/messages",
                                   json={"client_msg_id": uid("cm"), "body": "while bob was away"})
    assert status == 202, ack
    device = await bob.device("phone")
    redis.stop()
    try:
        await device.send({"type": "sync", "cursors": {}})
        await asyncio.wait_for(device._reader, 20)  # the socket closes: no replay, no live frames
        assert device.ws.close_code == CLOSE_RETRY
        assert device.of_type("synced") == [] and device.messages(cid) == []
    finally:
        redis.start().wait_ready(30)
    again = await bob.device("phone")  # what the client does after a close: reconnect, sync
    try:
        await again.send({"type": "sync", "cursors": {}})
        await again.wait_for("synced", timeout=30)
        assert [m["seq"] for m in again.messages(cid)] == [ack["seq"]]
    finally:
        await again.close()
