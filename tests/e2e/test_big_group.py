"""A group of 1,000 members: created in one request, fanned out to every connected device."""

from __future__ import annotations

import statistics
import time
import uuid

import aiohttp
import pytest
import pytest_asyncio

from tests.client import Client
from tests.support import System

MEMBERS = 1_000
CONNECTED = 50
MESSAGES = 20


@pytest.fixture(scope="module")
def system(stack, tmp_path_factory):
    system = System(stack, tmp_path_factory.mktemp("e2e-big-group"))
    system.start_worker()
    system.start_gateway()
    system.start_gateway()
    yield system
    system.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


async def test_a_thousand_member_group(system, session):
    tag = uuid.uuid4().hex[:6]
    names = [f"m{i}-{tag}" for i in range(MEMBERS)]
    urls = [system.url(g) for g in system.gateways]
    owner = await Client.sign_in(session, urls[0], names[0])
    cid = (await owner.create_group("everyone", names[1:]))["conversation_id"]
    status, conversation = await owner.call("GET", f"/v1/conversations/{cid}")
    assert status == 200 and len(conversation["members"]) == MEMBERS
    assert [m["user_id"] for m in conversation["members"] if m["role"] == "admin"] == [names[0]]

    clients = [owner] + [await Client.sign_in(session, urls[0], n) for n in names[1:CONNECTED]]
    devices = [await c.device("d", base_url=urls[i % 2]) for i, c in enumerate(clients)]
    for d in devices:  # as a client does on connect
        await d.send({"type": "sync", "cursors": {}})
        await d.wait_for("synced")
    sender = devices[0]
    fan_out = []
    for i in range(MESSAGES):
        started = time.perf_counter()
        await sender.send_message(cid, f"b{i}", f"to all {i}")
        for d in devices:
            await d.wait_for("message", lambda f, i=i: f["message"]["client_msg_id"] == f"b{i}", timeout=30)
        fan_out.append((time.perf_counter() - started) * 1000)
    print(f"\nfan-out to {CONNECTED} devices of a {MEMBERS}-member group: p50 {statistics.median(fan_out):.1f} ms,"
          f" max {max(fan_out):.1f} ms")
    for d in devices:
        assert [m["seq"] for m in d.messages(cid)] == list(range(1, MESSAGES + 1))
    for d in devices:
        await d.close()
