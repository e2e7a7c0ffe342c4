"""Typing indicators through the running system: across gateways, never stored, expiring,
stopped when the typist leaves, rate-limited per user."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.client import sign_in_users, timed_device
from tests.support import System

TYPING_TTL_S = 1.5


@pytest.fixture(scope="module")
def system(stack, tmp_path_factory):
    system = System(stack, tmp_path_factory.mktemp("e2e-typing"), CHAT_TYPING_TTL_S=str(TYPING_TTL_S),
                    CHAT_TYPING_RATE_BURST="5", CHAT_TYPING_RATE_PER_S="1")
    system.start_worker()
    system.start_gateway()
    system.start_gateway()
    yield system
    system.stop()


def arrival(device, frame: dict) -> float:
    """When this very frame (not an equal one) arrived."""
    return device.arrived_at[next(i for i, f in enumerate(device.frames) if f is frame)]


def typing(cid: str, on: bool) -> dict:
    return {"type": "typing", "conversation_id": cid, "typing": on}


async def test_typing_reaches_the_other_members_devices_on_every_gateway_and_is_never_stored(system, session):
    gw1, gw2 = system.url(system.gateways[0]), system.url(system.gateways[1])
    alice, bob, carol, eve = await sign_in_users(session, gw1, "alice", "bob", "carol", "eve")
    cid = (await alice.create_group("g", [bob.user_id, carol.user_id]))["conversation_id"]
    a_phone, a_laptop = await timed_device(alice, "phone"), await timed_device(alice, "laptop", gw2)
    b_phone, c_tab = await timed_device(bob, "phone", gw2), await timed_device(carol, "tab")
    e_dev = await timed_device(eve, "e")
    started = time.monotonic()
    await a_phone.send(typing(cid, True))
    for device in (b_phone, c_tab):  # one on the typist's gateway, one on the other
        (frame,) = await device.wait_for("typing", timeout=5)
        assert frame == {"type": "typing", "conversation_id": cid, "user_id": alice.user_id, "typing": True,
                         "ttl_ms": int(TYPING_TTL_S * 1000)}
        latency_ms = (arrival(device, frame) - started) * 1000
        print(f"typing latency to {device.device_id}: {latency_ms:.1f} ms")
        assert latency_ms < 1_000  # PROTOCOL target 200 ms; the figure itself is in bench/RESULTS.md
    await a_phone.send(typing(cid, False))
    await b_phone.wait_for("typing", lambda f: f["typing"] is False, timeout=5)
    await c_tab.wait_for("typing", lambda f: f["typing"] is False, timeout=5)
    await a_phone.send({"type": "ping", "id": "after"})
    await a_phone.wait_for("pong")
    await asyncio.sleep(0.3)
    # The typist's own devices and non-members hear nothing; nothing lands in history or sync.
    assert a_phone.of_type("typing") == a_laptop.of_type("typing") == e_dev.of_type("typing") == []
    status, body = await bob.call("GET", f"/v1/conversations/{cid}/messages")
    assert status == 200 and body["messages"] == []
    late = await timed_device(bob, "late")
    await late.send({"type": "sync", "cursors": {}})
    await late.wait_for("synced")
    assert late.of_type("typing") == [] and late.of_type("message") == []
    for device in (a_phone, a_laptop, b_phone, c_tab, e_dev, late):
        await device.close()


async def test_typing_needs_membership_and_a_boolean(system, session):
    alice, bob, eve = await sign_in_users(session, system.url(), "alice", "bob", "eve")
    cid = (await alice.create_group("g", [bob.user_id]))["conversation_id"]
    e_dev, b_dev = await timed_device(eve, "e"), await timed_device(bob, "b")
    await e_dev.send(typing(cid, True))
    (error,) = await e_dev.wait_for("error")
    assert error["code"] == "not_found"
    await e_dev.send({"type": "typing", "conversation_id": cid, "typing": "yes"})
    await e_dev.send({"type": "typing", "typing": True})
    errors = await e_dev.wait_for("error", count=3)
    assert [e["code"] for e in errors[1:]] == ["bad_request", "bad_request"]
    await asyncio.sleep(0.3)
    assert b_dev.of_type("typing") == []
    await e_dev.close()
    await b_dev.close()


async def test_an_indicator_without_refresh_expires(system, session):
    alice, bob = await sign_in_users(session, system.url(), "alice", "bob")
    cid = (await alice.create_group("g", [bob.user_id]))["conversation_id"]
    a_dev, b_dev = await timed_device(alice, "a"), await timed_device(bob, "b")
    await a_dev.send(typing(cid, True))
    await b_dev.wait_for("typing", lambda f: f["typing"], timeout=5)
    await asyncio.sleep(TYPING_TTL_S * 0.6)
    await a_dev.send(typing(cid, True))  # a refresh moves the expiry
    _, refresh = await b_dev.wait_for("typing", lambda f: f["typing"], count=2)
    (stop,) = await b_dev.wait_for("typing", lambda f: f["typing"] is False, timeout=TYPING_TTL_S + 5)
    lapsed_after = arrival(b_dev, stop) - arrival(b_dev, refresh)
    assert TYPING_TTL_S - 0.2 <= lapsed_after <= TYPING_TTL_S + 2, lapsed_after
    await a_dev.close()
    await b_dev.close()


async def test_typing_stops_when_the_typists_last_device_leaves(system, session):
    alice, bob = await sign_in_users(session, system.url(), "alice", "bob")
    cid = (await alice.create_group("g", [bob.user_id]))["conversation_id"]
    a_dev, b_dev = await timed_device(alice, "a"), await timed_device(bob, "b")
    await a_dev.send(typing(cid, True))
    await b_dev.wait_for("typing", lambda f: f["typing"], timeout=5)
    closed = time.monotonic()
    await a_dev.close()
    (stop,) = await b_dev.wait_for("typing", lambda f: f["typing"] is False, timeout=5)
    assert stop["user_id"] == alice.user_id
    assert arrival(b_dev, stop) - closed < TYPING_TTL_S  # not by lapsing
    await b_dev.close()


async def test_typing_is_rate_limited_per_user_but_stopping_never_is(system, session):
    alice, bob = await sign_in_users(session, system.url(), "alice", "bob")
    cid = (await alice.create_group("g", [bob.user_id]))["conversation_id"]
    a_dev, b_dev = await timed_device(alice, "a"), await timed_device(bob, "b")
    for _ in range(8):  # a burst of 5 is allowed, then 1 per second
        await a_dev.send(typing(cid, True))
    errors = await a_dev.wait_for("error", count=3)
    assert {e["code"] for e in errors} == {"rate_limited"} and all(e["retry_after_ms"] > 0 for e in errors)
    await b_dev.wait_for("typing", lambda f: f["typing"], count=5)
    await a_dev.send(typing(cid, False))
    await b_dev.wait_for("typing", lambda f: f["typing"] is False, timeout=5)
    await asyncio.sleep(0.3)
    assert len(b_dev.of_type("typing", lambda f: f["typing"])) == 5
    await a_dev.close()
    await b_dev.close()
