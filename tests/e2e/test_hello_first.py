"""``hello`` is the first frame of every connection (PROTOCOL.md), even while frames for the
connecting user are flowing: contacts going online and offline, and typing."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
import pytest

from tests.client import Client, sign_in_users
from tests.support import System

CONNECTING, ROUNDS, FLAPPERS = 8, 40, 6  # 320 connects


@pytest.fixture(scope="module")
def system(stack, tmp_path_factory):
    system = System(stack, tmp_path_factory.mktemp("e2e-hello-first"), partitions=1,
                    CHAT_PRESENCE_DEBOUNCE_S="0", CHAT_TYPING_RATE_BURST="100000",
                    CHAT_TYPING_RATE_PER_S="100000", CHAT_MAX_CONNECTIONS_PER_USER="100")
    system.start_worker()
    system.start_gateway()
    yield system
    system.stop()


async def flap(contact: Client, stop: asyncio.Event) -> None:
    """A contact connecting and disconnecting: presence frames to the others."""
    while not stop.is_set():
        device = await contact.device("flap")
        await asyncio.sleep(0.02)
        await device.close()
        await asyncio.sleep(0.02)


async def type_on(typist: Client, conversation_id: str, stop: asyncio.Event) -> None:
    """A contact typing as fast as the socket takes it: typing frames to the others."""
    device = await typist.device("keys")
    typing = True
    while not stop.is_set():
        await device.send({"type": "typing", "conversation_id": conversation_id, "typing": typing})
        typing = not typing
        await asyncio.sleep(0.001)
    await device.close()


async def test_hello_comes_first_while_presence_and_typing_flow(system):
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        users = await sign_in_users(session, system.url(), *[f"u{i}" for i in range(CONNECTING)])
        contacts = await sign_in_users(session, system.url(), "typist", *[f"flap{i}" for i in range(FLAPPERS)])
        group = await users[0].create_group("busy", [c.user_id for c in users[1:] + contacts])
        cid = group["conversation_id"]
        watcher = await users[0].device("watch")
        stop = asyncio.Event()
        noise = [asyncio.create_task(type_on(contacts[0], cid, stop))]
        noise += [asyncio.create_task(flap(c, stop)) for c in contacts[1:]]
        try:
            await watcher.wait_for("typing", timeout=20)
            await watcher.wait_for("presence", timeout=20)
            firsts = []
            for r in range(ROUNDS):
                devices = await asyncio.gather(*(u.device(f"r{r}") for u in users))
                firsts += [(d.user_id, d.device_id, d.frames[0]["type"]) for d in devices]
                await asyncio.gather(*(d.close() for d in devices))
        finally:
            stop.set()
            for task in noise:
                with contextlib.suppress(Exception):
                    await task
        assert len(firsts) == CONNECTING * ROUNDS
        assert [f for f in firsts if f[2] != "hello"] == []
        await watcher.close()
