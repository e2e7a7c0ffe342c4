"""Presence through the running system: events on the presence topic, frames to contacts,
``GET /v1/presence``, several devices, debounced flapping, and a gateway that dies."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from chat.events import PresenceChanged
from tests.client import sign_in_users, timed_device
from tests.support import PartitionReader, System

DEBOUNCE_S, TTL_S = 1.0, 3.0


@pytest.fixture(scope="module")
def system(stack, tmp_path_factory):
    system = System(stack, tmp_path_factory.mktemp("e2e-presence"), partitions=1,
                    CHAT_PRESENCE_DEBOUNCE_S=str(DEBOUNCE_S), CHAT_PRESENCE_TTL=str(TTL_S),
                    CHAT_HEARTBEAT_INTERVAL_S="0.5")
    system.start_worker()
    system.start_gateway()
    yield system
    system.stop()


def presence_of(user_id: str, status: str | None = None):
    return lambda f: f["user_id"] == user_id and (status is None or f["status"] == status)


async def presence(client, *user_ids: str) -> dict:
    status, body = await client.call("GET", f"/v1/presence?user_ids={','.join(user_ids)}")
    assert status == 200, body
    return body


async def test_contacts_see_a_user_come_online_and_go_offline(system, session):
    alice, bob, dave = await sign_in_users(session, system.url(), "alice", "bob", "dave")
    await alice.create_group("g", [bob.user_id])
    b_dev, d_dev = await timed_device(bob, "b"), await timed_device(dave, "d")
    connected = time.monotonic()
    a_dev = await timed_device(alice, "a")
    (online,) = await b_dev.wait_for("presence", presence_of(alice.user_id, "online"), timeout=10)
    print(f"presence online latency: {(b_dev.arrived_at[-1] - connected) * 1000:.0f} ms")
    assert set(online) == {"type", "user_id", "status", "last_seen"} and online["last_seen"] > 0
    seen = await presence(bob, alice.user_id, dave.user_id, "nobody-at-all")
    assert seen[alice.user_id]["status"] == "online"
    # Users who share no conversation with the caller read offline, last_seen null: nothing leaks.
    assert seen[dave.user_id] == seen["nobody-at-all"] == {"status": "offline", "last_seen": None}
    assert (await presence(dave, alice.user_id)) == {alice.user_id: {"status": "offline", "last_seen": None}}
    left = int(time.time() * 1000)
    await a_dev.close()
    (offline,) = await b_dev.wait_for("presence", presence_of(alice.user_id, "offline"), timeout=10)
    assert offline["last_seen"] >= left - 1_000
    assert (await presence(bob, alice.user_id))[alice.user_id] == {"status": "offline",
                                                                   "last_seen": offline["last_seen"]}
    assert d_dev.of_type("presence", presence_of(alice.user_id)) == []  # not a contact
    for device in (b_dev, d_dev):
        await device.close()


async def test_online_while_any_device_is_connected(system, session):
    alice, bob = await sign_in_users(session, system.url(), "alice", "bob")
    await alice.create_group("g", [bob.user_id])
    b_dev = await timed_device(bob, "b")
    phone, laptop = await timed_device(alice, "phone"), await timed_device(alice, "laptop")
    await b_dev.wait_for("presence", presence_of(alice.user_id, "online"))
    await phone.close()
    await asyncio.sleep(DEBOUNCE_S * 2.5)
    assert b_dev.of_type("presence", presence_of(alice.user_id, "offline")) == []
    assert (await presence(bob, alice.user_id))[alice.user_id]["status"] == "online"
    await laptop.close()
    await b_dev.wait_for("presence", presence_of(alice.user_id, "offline"), timeout=10)
    assert [f["status"] for f in b_dev.of_type("presence", presence_of(alice.user_id))] == ["online", "offline"]
    await b_dev.close()


async def test_flapping_makes_no_offline_online_storm(system, session):
    alice, bob = await sign_in_users(session, system.url(), "alice", "bob")
    await alice.create_group("g", [bob.user_id])
    b_dev = await timed_device(bob, "b")
    a_dev = await timed_device(alice, "a")
    await b_dev.wait_for("presence", presence_of(alice.user_id, "online"))
    for _ in range(6):  # a train through tunnels: quick reconnects, each well within the debounce
        await a_dev.close()
        await asyncio.sleep(DEBOUNCE_S / 5)
        a_dev = await timed_device(alice, "a")
        await asyncio.sleep(DEBOUNCE_S / 5)
    await asyncio.sleep(DEBOUNCE_S * 2)
    assert [f["status"] for f in b_dev.of_type("presence", presence_of(alice.user_id))] == ["online"]
    await a_dev.close()
    await b_dev.wait_for("presence", presence_of(alice.user_id, "offline"), timeout=10)
    await asyncio.sleep(DEBOUNCE_S)
    assert [f["status"] for f in b_dev.of_type("presence", presence_of(alice.user_id))] == ["online", "offline"]
    # The presence topic holds the same story as the frames: one online, one offline.
    with PartitionReader(system.stack.bootstrap, system.settings.presence_topic, 0) as reader:
        records = reader.read_until(
            lambda rs: any(r.event.user_id == alice.user_id and r.event.status == "offline" for r in rs),
            what="alice's offline")
    mine = [r for r in records if isinstance(r.event, PresenceChanged) and r.event.user_id == alice.user_id]
    assert [r.event.status for r in mine] == ["online", "offline"] and {r.key for r in mine} == {alice.user_id}
    await b_dev.close()


async def test_users_of_a_gateway_that_dies_go_offline_when_their_ttl_runs_out(system, session):
    doomed = system.start_gateway()
    alice, bob = await sign_in_users(session, system.url(), "alice", "bob")
    await alice.create_group("g", [bob.user_id])
    b_dev = await timed_device(bob, "b")
    await timed_device(alice, "a", system.url(doomed))
    await b_dev.wait_for("presence", presence_of(alice.user_id, "online"))
    await asyncio.sleep(1.0)  # a heartbeat or two
    os.kill(doomed.pid, signal.SIGKILL)  # no goodbye: no disconnect signal
    killed = time.monotonic()
    (offline,) = await b_dev.wait_for("presence", presence_of(alice.user_id, "offline"), timeout=TTL_S + 10)
    waited = b_dev.arrived_at[-1] - killed
    assert TTL_S - 1.0 <= waited <= TTL_S + 3.0, waited
    assert int(time.time() * 1000) - offline["last_seen"] >= (TTL_S - 1.0) * 1000  # its last heartbeat
    assert (await presence(bob, alice.user_id))[alice.user_id]["status"] == "offline"
    doomed.stop()
    await b_dev.close()


async def test_a_new_worker_takes_over_who_is_online_without_a_second_online(system, session):
    alice, bob, carol = await sign_in_users(session, system.url(), "alice", "bob", "carol")
    await alice.create_group("g", [bob.user_id, carol.user_id])
    b_dev, a_dev = await timed_device(bob, "b"), await timed_device(alice, "a")
    c_dev = await timed_device(carol, "c")
    await b_dev.wait_for("presence", presence_of(carol.user_id, "online"))
    await b_dev.wait_for("presence", presence_of(alice.user_id, "online"))
    (old,) = system.workers
    os.kill(old.pid, signal.SIGKILL)
    system.workers.remove(old)
    await c_dev.close()  # while no worker runs: its signal waits on the topic
    system.start_worker()
    (offline,) = await b_dev.wait_for("presence", presence_of(carol.user_id, "offline"), timeout=60)
    await a_dev.close()
    await b_dev.wait_for("presence", presence_of(alice.user_id, "offline"), timeout=10)
    # Alice stayed online across the takeover: one online, then her offline; no storm.
    assert [f["status"] for f in b_dev.of_type("presence", presence_of(alice.user_id))] == ["online", "offline"]
    assert [f["status"] for f in b_dev.of_type("presence", presence_of(carol.user_id))] == ["online", "offline"]
    await b_dev.close()
