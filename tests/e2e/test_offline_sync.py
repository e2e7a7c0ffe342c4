"""Offline devices and `sync`: catching up after being away, across a gateway restart, and
joining while messages stream in (PROTOCOL.md, "Delivery guarantees")."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from tests.client import Client, Device, contiguous_cursor, eventually, first_seen, uid
from tests.support import System


@pytest.fixture(scope="module")
def system(stack, tmp_path_factory):
    system = System(stack, tmp_path_factory.mktemp("e2e-offline-sync"))
    system.start_worker()
    system.start_gateway()  # up for the whole module; the restart tests start and stop their own
    yield system
    system.stop()


def seqs(messages: list[dict[str, Any]]) -> list[int]:
    return [m["seq"] for m in messages]


def before_synced(device: Device, nth: int = 1) -> list[dict[str, Any]]:
    """The messages a device got before its ``nth`` ``synced`` frame."""
    out, count = [], 0
    for frame in device.frames:
        if frame["type"] == "synced":
            count += 1
            if count == nth:
                return out
        elif frame["type"] == "message":
            out.append(frame["message"])
    raise AssertionError(f"no synced frame #{nth}")


# (a) A device that was offline catches up.

async def test_offline_device_catches_up_with_sync(system, session):
    alice = await Client.sign_in(session, system.url(), uid("alice"))
    bob = await Client.sign_in(session, system.url(), uid("bob"))
    gid = (await bob.create_group("offline", [alice.user_id]))["conversation_id"]
    b1 = await bob.device("phone")
    phone = await alice.device("phone")
    await b1.send_message(gid, "first", "while the phone is online")
    await phone.wait_for("message", lambda f: f["message"]["conversation_id"] == gid)
    cursor = phone.messages(gid)[-1]["seq"]
    assert cursor == 1
    await phone.close()

    status, direct = await bob.call("POST", "/v1/conversations", json={"type": "direct", "peer": alice.user_id})
    assert status == 201, direct
    did = direct["conversation_id"]
    for i in range(30):
        await b1.send_message(gid, f"g{i}", f"group {i}")
    for i in range(5):
        await b1.send_message(did, f"d{i}", f"direct {i}")
    await b1.wait_for("ack", count=36)
    assert not b1.of_type("error")

    phone = await alice.device("phone")
    await phone.send({"type": "sync", "cursors": {gid: cursor}})  # the direct one is not named
    (synced,) = await phone.wait_for("synced")
    replayed = before_synced(phone)
    group = [m for m in replayed if m["conversation_id"] == gid]
    direct_messages = [m for m in replayed if m["conversation_id"] == did]
    assert len(replayed) == len(group) + len(direct_messages)
    assert seqs(group) == list(range(2, 32)), seqs(group)
    assert [m["body"] for m in group] == [f"group {i}" for i in range(30)]
    assert seqs(direct_messages) == list(range(1, 6)), seqs(direct_messages)  # never named: from seq 1
    assert [m["body"] for m in direct_messages] == [f"direct {i}" for i in range(5)]
    assert all(m["sender_id"] == bob.user_id for m in replayed)
    assert synced["cursors"] == {gid: 31, did: 5}

    await phone.send({"type": "sync", "cursors": synced["cursors"]})
    second = (await phone.wait_for("synced", count=2))[1]
    await asyncio.sleep(0.3)
    assert len(phone.of_type("message")) == len(replayed), "a sync with up-to-date cursors replayed messages"
    assert second["cursors"] == synced["cursors"]
    for device in (b1, phone):
        await device.close()


# (b) A gateway restart loses nothing.

@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def across_restart(system):
    """Three devices on gateway A while bob streams ~25 messages/s through gateway B; A is
    stopped (SIGTERM) mid-stream and a new gateway C started; the devices reconnect (to C, or
    to B) and sync from their cursors. Yields (gid, {device: (old, new)}, bob's device, sent)."""
    async with aiohttp.ClientSession() as session:
        b_url = system.url(system.gateways[0])
        gateway_a = await asyncio.to_thread(system.start_gateway)
        a_url = system.url(gateway_a)
        alice = await Client.sign_in(session, b_url, uid("alice"))
        carol = await Client.sign_in(session, b_url, uid("carol"))
        bob = await Client.sign_in(session, b_url, uid("bob"))
        gid = (await bob.create_group("restart", [alice.user_id, carol.user_id]))["conversation_id"]
        on_a = {("alice", "phone"): await alice.device("phone", a_url),
                ("alice", "laptop"): await alice.device("laptop", a_url),
                ("carol", "phone"): await carol.device("phone", a_url)}
        b1 = await bob.device("phone", b_url)
        stop = asyncio.Event()

        async def stream() -> int:  # well under the rate limit (50/s sustained)
            n = 0
            while not stop.is_set():
                await b1.send_message(gid, f"r{n}", f"restart {n}")
                n += 1
                await asyncio.sleep(0.04)
            return n

        sender = asyncio.create_task(stream())
        for device in on_a.values():
            await eventually(lambda: len(device.messages(gid)) >= 10, 15, f"10 live messages on {device.device_id}")
        stopping = time.monotonic()
        code = await asyncio.to_thread(gateway_a.stop)  # SIGTERM (SIGKILL after 10 s); the stream goes on
        stopped = time.monotonic()
        for device in on_a.values():
            await eventually(lambda: device.ws.closed, 5, f"{device.device_id}'s socket closed by the stopped gateway")
        seen_before = [len(d.messages(gid)) for d in on_a.values()]

        gateway_c = await asyncio.to_thread(system.start_gateway)
        c_url = system.url(gateway_c)
        where = {("alice", "phone"): (alice, c_url), ("alice", "laptop"): (alice, b_url),
                 ("carol", "phone"): (carol, c_url)}
        pairs: dict[tuple[str, str], tuple[Device, Device]] = {}
        for key, old in on_a.items():
            client, url = where[key]
            new = await client.device(key[1], url)
            await new.send({"type": "sync", "cursors": {gid: contiguous_cursor(old.messages(gid))}})
            pairs[key] = (old, new)
        for _, new in pairs.values():
            await new.wait_for("synced")
        await asyncio.sleep(0.5)  # some live traffic after the sync
        stop.set()
        sent = await sender
        await b1.wait_for("ack", count=sent, timeout=20)
        for key, (old, new) in pairs.items():
            await eventually(lambda: len({m["seq"] for m in old.messages(gid) + new.messages(gid)}) >= sent, 15,
                             f"{sent} messages on {key}")
        await asyncio.sleep(0.3)
        print(f"\n[gateway restart] {sent} messages; gateway A stopped in {stopped - stopping:.2f}s (exit {code}), "
              f"close codes {[d.ws.close_code for d in on_a.values()]}; live before the stop {seen_before}; "
              f"frames after reconnecting {[len(new.messages(gid)) for _, new in pairs.values()]}")
        yield gid, pairs, b1, sent
        for device in [b1, *(new for _, new in pairs.values())]:
            await device.close()


async def test_gateway_restart_loses_nothing(across_restart):
    gid, pairs, b1, sent = across_restart
    assert not b1.of_type("error")
    assert sorted(a["seq"] for a in b1.of_type("ack")) == list(range(1, sent + 1))
    for key, (old, new) in pairs.items():
        combined = first_seen(old.messages(gid) + new.messages(gid))
        assert len(combined) == sent and sorted(seqs(combined)) == list(range(1, sent + 1)), (
            f"{key}: missing {sorted(set(range(1, sent + 1)) - set(seqs(combined)))}")
        assert {m["seq"]: m["body"] for m in combined} == {n + 1: f"restart {n}" for n in range(sent)}
        (synced,) = new.of_type("synced")
        assert synced["cursors"][gid] >= contiguous_cursor(old.messages(gid))
    assert seqs(first_seen(b1.messages(gid))) == list(range(1, sent + 1))  # the sender's device, on B all along


async def test_gateway_restart_keeps_seq_order(across_restart):
    gid, pairs, _, _ = across_restart
    for key, (old, new) in pairs.items():
        arrived = seqs(first_seen(old.messages(gid) + new.messages(gid)))
        assert arrived == sorted(arrived), (
            f"{key}: PROTOCOL.md: a device receives messages in seq order per conversation; "
            f"after reconnecting it got {seqs(new.messages(gid))[:12]}…")


async def test_sigterm_closes_sockets_with_going_away_promptly(system, session):
    gateway = await asyncio.to_thread(system.start_gateway)
    alice = await Client.sign_in(session, system.url(gateway), uid("alice"))
    device = await alice.device("phone", system.url(gateway))
    stopping = time.monotonic()
    code = await asyncio.to_thread(gateway.stop, 15)
    took = time.monotonic() - stopping
    await eventually(lambda: device.ws.closed, 5, "the socket closed")
    assert (device.ws.close_code, code) == (1001, 0) and took < 5, (
        f"SIGTERM with one socket open: stopped in {took:.1f}s, exit {code}, close code {device.ws.close_code}")


# (c) No gap between sync and live: devices connect and sync while a stream is being sent.

STREAM = 100
JOINERS = 4


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def joined_mid_stream(system):
    """Dave sends STREAM messages at ~100/s; erin's devices connect at staggered moments during
    it, each syncing at once with no cursor. Yields (gid, erin's devices, dave's acks)."""
    async with aiohttp.ClientSession() as session:
        dave = await Client.sign_in(session, system.url(), uid("dave"))
        erin = await Client.sign_in(session, system.url(), uid("erin"))
        gid = (await dave.create_group("stream", [erin.user_id]))["conversation_id"]
        d1 = await dave.device("phone")

        async def stream() -> None:
            for n in range(STREAM):
                await d1.send_message(gid, f"s{n}", f"stream {n}")
                await asyncio.sleep(0.01)

        sender = asyncio.create_task(stream())
        await d1.wait_for("ack", timeout=20)  # joiners come mid-stream, after a first message is stored
        joiners = []
        for j in range(JOINERS):
            await asyncio.sleep(0.15)
            device = await erin.device(f"dev{j}")
            await device.send({"type": "sync", "cursors": {}})
            joiners.append(device)
        await sender
        for device in joiners:
            await device.wait_for("synced")
        await d1.wait_for("ack", count=STREAM, timeout=20)
        assert not d1.of_type("error")
        for device in joiners:
            await eventually(lambda: len({m["seq"] for m in device.messages(gid)}) >= STREAM, 10,
                             f"{STREAM} messages on {device.device_id}")
        await asyncio.sleep(0.3)
        yield gid, joiners, d1.of_type("ack")
        for device in [d1, *joiners]:
            await device.close()


def arrival_report(device: Device, gid: str) -> str:
    raw = seqs(device.messages(gid))
    synced_at = next(i for i, f in enumerate(device.frames) if f["type"] == "synced")
    before = [f for f in device.frames[:synced_at] if f["type"] == "message"]
    unique = seqs(first_seen(device.messages(gid)))
    inversions = sum(1 for a, b in zip(unique, unique[1:]) if b < a)
    return (f"{device.device_id}: {len(raw)} frames, {len(raw) - len(set(raw))} duplicates, "
            f"{inversions} inversions after dedup, first {raw[:5]}, {len(before)} before synced")


async def test_no_gap_between_sync_and_live(joined_mid_stream):
    gid, joiners, acks = joined_mid_stream
    assert sorted(a["seq"] for a in acks) == list(range(1, STREAM + 1))
    print("\n[sync/live] " + "; ".join(arrival_report(d, gid) for d in joiners))
    for device in joiners:
        got = {m["seq"] for m in device.messages(gid)}
        assert got == set(range(1, STREAM + 1)), f"{device.device_id}: missing {sorted(set(range(1, STREAM + 1)) - got)}"
        (synced,) = device.of_type("synced")
        assert 1 <= synced["cursors"][gid] <= STREAM


async def test_sync_and_live_arrive_in_seq_order(joined_mid_stream):
    gid, joiners, _ = joined_mid_stream
    for device in joiners:
        unique = seqs(first_seen(device.messages(gid)))
        assert unique == sorted(unique), (
            f"PROTOCOL.md: a device receives messages in seq order per conversation; "
            f"{arrival_report(device, gid)}; arrival order after dedup: {unique[:30]}…")


async def test_sync_and_live_send_each_message_once(joined_mid_stream):
    """Live frames still in flight for what the replay already sent are dropped at the gateway."""
    gid, joiners, _ = joined_mid_stream
    for device in joiners:
        raw = seqs(device.messages(gid))
        assert raw == list(range(1, STREAM + 1)), arrival_report(device, gid)
