"""A group of 1,000 members: created over HTTP in one request, 50 of them connected on two
gateways; every connected device gets every message in order, and fan-out latency is measured."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid

import pytest

from tests.client import Client, TimedDevice, eventually, first_seen, timed_device
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


def first_arrival(device: TimedDevice, cid: str, seq: int) -> float:
    return next(t for f, t in zip(device.frames, device.arrived_at)
                if f["type"] == "message" and f["message"]["conversation_id"] == cid and f["message"]["seq"] == seq)


async def test_a_thousand_members_fifty_connected(system, session):
    run = uuid.uuid4().hex[:6]
    member_ids = [f"m{i:03d}-{run}" for i in range(MEMBERS - 1)]
    urls = [system.url(g) for g in system.gateways]
    creator = await Client.sign_in(session, urls[0], f"owner-{run}")
    connected = [creator] + [await Client.sign_in(session, urls[0], u) for u in member_ids[:CONNECTED - 1]]
    devices = await asyncio.gather(*(timed_device(c, "phone", urls[i % 2]) for i, c in enumerate(connected)))
    for device in devices:  # as a client does on connect (live messages wait for it, or a 1 s grace)
        await device.send({"type": "sync", "cursors": {}})
        await device.wait_for("synced")

    started = time.monotonic()
    status, group = await creator.call("POST", "/v1/conversations", json={
        "type": "group", "name": "everyone", "description": "a thousand", "members": member_ids})
    created_in = time.monotonic() - started
    assert status == 201, group
    cid = group["conversation_id"]
    assert len(group["members"]) == MEMBERS
    for device in devices:  # every connected member hears of it
        (frame,) = await device.wait_for("conversation", lambda f: f["conversation"]["conversation_id"] == cid)
        assert len(frame["conversation"]["members"]) == MEMBERS

    sender = devices[0]
    sent_at: list[float] = []
    for n in range(MESSAGES):
        sent_at.append(time.monotonic())
        await sender.send_message(cid, f"b{n}", f"to everyone {n}")
        await asyncio.sleep(0.1)  # one at a time: latency, not queueing
    await sender.wait_for("ack", count=MESSAGES)
    assert not sender.of_type("error")
    for device in devices:
        await eventually(lambda: len({m["seq"] for m in device.messages(cid)}) >= MESSAGES, 20,
                         f"{MESSAGES} messages on {device.user_id}")
    await asyncio.sleep(0.3)

    for device in devices:
        raw = device.messages(cid)
        assert [m["seq"] for m in raw] == list(range(1, MESSAGES + 1)), f"{device.user_id}: {[m['seq'] for m in raw]}"
        assert [m["body"] for m in first_seen(raw)] == [f"to everyone {n}" for n in range(MESSAGES)]

    to_last = [max(first_arrival(d, cid, n + 1) for d in devices) - sent_at[n] for n in range(MESSAGES)]
    each = [first_arrival(d, cid, n + 1) - sent_at[n] for d in devices for n in range(MESSAGES)]
    ms = lambda xs: f"p50 {statistics.median(xs) * 1000:.0f} ms / max {max(xs) * 1000:.0f} ms"  # noqa: E731
    print(f"\n[big group] {MEMBERS} members, {CONNECTED} connected on 2 gateways: created in {created_in:.2f}s; "
          f"send -> last device {ms(to_last)}; send -> each device {ms(each)}; "
          f"send -> last device per message (ms) {[round(x * 1000) for x in to_last]}")

    status, conversation = await creator.call("GET", f"/v1/conversations/{cid}")
    assert status == 200
    members = conversation["members"]
    assert len(members) == MEMBERS and len({m["user_id"] for m in members}) == MEMBERS
    assert {m["user_id"] for m in members} == set(member_ids) | {creator.user_id}
    assert [m["user_id"] for m in members if m["role"] == "admin"] == [creator.user_id]
    assert all(m["role"] in ("admin", "member") for m in members)
    for device in devices:
        await device.close()
