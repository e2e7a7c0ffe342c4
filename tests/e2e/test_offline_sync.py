"""Offline devices and gateway restarts: what a device missed comes with `sync`, in order,
from the timeline store (conversations it never saw included), and nothing is lost."""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
import pytest
import pytest_asyncio

from tests.client import Client
from tests.support import System


@pytest.fixture(scope="module")
def system(stack, tmp_path_factory):
    system = System(stack, tmp_path_factory.mktemp("e2e-offline"))
    system.start_worker()
    system.start_gateway()
    system.start_gateway()
    yield system
    system.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


async def users(session, url, *names):
    return [await Client.sign_in(session, url, f"{n}-{uuid.uuid4().hex[:6]}") for n in names]


def by_seq(device, cid):
    """A client's view: messages deduplicated by (conversation, seq), in arrival order."""
    seen, out = set(), []
    for m in device.messages(cid):
        if m["seq"] not in seen:
            seen.add(m["seq"])
            out.append(m["seq"])
    return out


async def test_offline_device_catches_up_with_sync(system, session):
    alice, bob = await users(session, system.url(), "alice", "bob")
    group = (await bob.create_group("g", [alice.user_id]))["conversation_id"]
    phone = await alice.device("phone")
    b1 = await bob.device("b1")
    await b1.send_message(group, "first", "seen live")
    await phone.wait_for("message")
    await phone.close()

    for i in range(30):
        await b1.send_message(group, f"g{i}", f"group {i}")
    status, dm = await bob.call("POST", "/v1/conversations", json={"type": "direct", "peer": alice.user_id})
    for i in range(5):
        await b1.send_message(dm["conversation_id"], f"d{i}", f"direct {i}")
    await b1.wait_for("ack", count=36)

    phone = await alice.device("phone")
    await phone.send({"type": "sync", "cursors": {group: 1}})  # the direct one is not named
    (synced,) = await phone.wait_for("synced")
    assert synced["cursors"] == {group: 31, dm["conversation_id"]: 5}
    assert [m["seq"] for m in phone.messages(group)] == list(range(2, 32))
    assert [m["body"] for m in phone.messages(dm["conversation_id"])] == [f"direct {i}" for i in range(5)]
    before = len(phone.of_type("message"))
    await phone.send({"type": "sync", "cursors": synced["cursors"]})
    await phone.wait_for("synced", count=2)
    assert len(phone.of_type("message")) == before  # nothing new to replay
    await phone.close(), await b1.close()


async def test_a_gateway_restart_loses_nothing(system, session):
    gw_a = system.start_gateway()
    gw_b = system.gateways[0]
    alice, bob = await users(session, system.url(gw_b), "alice", "bob")
    cid = (await bob.create_group("g", [alice.user_id]))["conversation_id"]
    a1 = await alice.device("a1", base_url=system.url(gw_a))
    b1 = await bob.device("b1", base_url=system.url(gw_b))

    async def stream(start: int, count: int) -> None:
        for i in range(start, start + count):
            await b1.send_message(cid, f"m{i}", f"message {i}")
            await asyncio.sleep(0.01)

    await stream(0, 20)
    await a1.wait_for("message", count=20)
    cursor = max(by_seq(a1, cid))
    sending = asyncio.create_task(stream(20, 60))
    await asyncio.to_thread(gw_a.stop)  # a1's gateway goes away mid-stream
    await sending
    await b1.wait_for("ack", count=80)

    a1 = await alice.device("a1", base_url=system.url(gw_b))  # reconnects elsewhere
    await a1.send({"type": "sync", "cursors": {cid: cursor}})
    await a1.wait_for("synced")
    assert by_seq(a1, cid) == list(range(cursor + 1, 81))
    await a1.close(), await b1.close()


async def test_no_gap_and_no_disorder_between_sync_and_live(system, session):
    alice, bob = await users(session, system.url(), "alice", "bob")
    cid = (await bob.create_group("g", [alice.user_id]))["conversation_id"]
    b1 = await bob.device("b1", base_url=system.url(system.gateways[1]))

    async def stream() -> None:
        for i in range(100):
            await b1.send_message(cid, f"m{i}", f"message {i}")
            await asyncio.sleep(0.01)

    sending = asyncio.create_task(stream())
    await asyncio.sleep(0.3)  # some are stored before the device connects, the rest arrive live
    a1 = await alice.device("a1")
    await a1.send({"type": "sync", "cursors": {}})
    await sending
    await b1.wait_for("ack", count=100)
    await a1.wait_for("message", lambda f: f["message"]["seq"] == 100)
    seqs = [m["seq"] for m in a1.messages(cid)]
    assert seqs == sorted(seqs), "a device must receive each conversation in seq order"
    assert sorted(set(seqs)) == list(range(1, 101))
    await a1.close(), await b1.close()
