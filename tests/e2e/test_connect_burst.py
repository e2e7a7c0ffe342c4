"""A burst of devices connecting at once: every one is let in (no 500 when the burst wants
more Redis connections than the pool holds: it waits its turn)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.client import sign_in_users
from tests.support import System

USERS, DEVICES = 25, 20  # 500 connects at once, five times redis-py's default pool


@pytest.fixture(scope="module")
def system(stack, tmp_path_factory):
    system = System(stack, tmp_path_factory.mktemp("e2e-burst"), CHAT_REDIS_MAX_CONNECTIONS="16")
    system.start_worker()
    system.start_gateway()
    yield system
    system.stop()


async def test_every_device_of_a_burst_gets_hello(system):
    # A session of its own: the shared one's connector holds at most 100 sockets.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        clients = await sign_in_users(session, system.url(), *[f"burst{i}" for i in range(USERS)])
        devices = await asyncio.gather(*(c.device(f"d{i}") for c in clients for i in range(DEVICES)))
        assert len(devices) == USERS * DEVICES
        assert all(d.of_type("hello") for d in devices)
        await asyncio.gather(*(d.close() for d in devices))
