"""Ordering under concurrency: 3 senders on 3 gateways x 200 messages into one group, 3 stream
workers, 3 partitions; every device (senders' own included) sees exactly 1..600 in order."""

from __future__ import annotations

import asyncio
import time
import uuid

import aiohttp
import pytest
import pytest_asyncio

from tests.client import Client
from tests.support import System

PER_SENDER = 200
SENDERS = 3


@pytest.fixture(scope="module")
def system(stack, tmp_path_factory):
    system = System(stack, tmp_path_factory.mktemp("e2e-order"), partitions=3,
                    CHAT_RATE_BURST="1000", CHAT_RATE_PER_S="1000")
    for _ in range(3):
        system.start_worker()
    for _ in range(3):
        system.start_gateway()
    yield system
    system.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


async def test_three_senders_on_three_gateways_keep_one_order(system, session):
    urls = [system.url(g) for g in system.gateways]
    names = [f"u{i}-{uuid.uuid4().hex[:6]}" for i in range(6)]
    clients = [await Client.sign_in(session, urls[0], n) for n in names]
    cid = (await clients[0].create_group("load", [c.user_id for c in clients[1:]]))["conversation_id"]
    devices = [await c.device("main", base_url=urls[i % 3]) for i, c in enumerate(clients)]
    extra = await clients[0].device("second", base_url=urls[1])  # a sender's other device
    senders = devices[:SENDERS]  # on gateways 0, 1, 2

    started = time.perf_counter()

    async def burst(index: int, device) -> None:
        for i in range(PER_SENDER):
            await device.send_message(cid, f"s{index}-{i}", f"sender {index} message {i}")

    await asyncio.gather(*(burst(i, d) for i, d in enumerate(senders)))
    total = SENDERS * PER_SENDER
    acks = [await d.wait_for("ack", lambda f: f["conversation_id"] == cid, count=PER_SENDER, timeout=90)
            for d in senders]
    for device in devices + [extra]:
        await device.wait_for("message", lambda f: f["message"]["conversation_id"] == cid, count=total, timeout=90)
    elapsed = time.perf_counter() - started
    print(f"\n{total} messages from {SENDERS} gateways delivered to {len(devices) + 1} devices "
          f"in {elapsed:.2f}s ({total / elapsed:.0f} msg/s)")

    acked = sorted(a["seq"] for sender_acks in acks for a in sender_acks)
    assert acked == list(range(1, total + 1))  # gap-free, no seq twice
    for sender_acks in acks:
        assert [a["seq"] for a in sender_acks] == sorted(a["seq"] for a in sender_acks)
    by_message_id = {a["message_id"]: a for sender_acks in acks for a in sender_acks}
    for device in devices + [extra]:
        seqs = [m["seq"] for m in device.messages(cid)]
        assert seqs == list(range(1, total + 1)), f"{device.user_id}/{device.device_id} saw a gap, a duplicate or disorder"
        for m in device.messages(cid):
            ack = by_message_id[m["message_id"]]
            assert (m["seq"], m["client_msg_id"]) == (ack["seq"], ack["client_msg_id"])
        # each sender's own messages keep the order they were sent in
        for index in range(SENDERS):
            mine = [m["client_msg_id"] for m in device.messages(cid) if m["client_msg_id"].startswith(f"s{index}-")]
            assert mine == [f"s{index}-{i}" for i in range(PER_SENDER)]

    history, before = [], None
    while True:
        query = f"?limit=200&before_seq={before}" if before else "?limit=200"
        status, page = await clients[3].call("GET", f"/v1/conversations/{cid}/messages{query}")
        assert status == 200
        history = page["messages"] + history
        if not page["has_more"]:
            break
        before = page["messages"][0]["seq"]
    assert [m["seq"] for m in history] == list(range(1, total + 1))
    for d in devices + [extra]:
        await d.close()
