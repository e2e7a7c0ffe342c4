"""Lua scripts queued on pipelines (EVALSHA alone, no SCRIPT EXISTS first) on the real Redis:
when Redis has lost its script cache (a restart, SCRIPT FLUSH) the pipeline is run again once
the script is loaded, and what it wrote is as if it had run once."""

from __future__ import annotations

import uuid

import pytest_asyncio
import redis.asyncio as redis

from chat.events import MessageAccepted, Origin, ReceiptRecorded
from chat.redis_pool import Script, hgetall_many, run_pipeline
from projections.conversations import ConversationProjection
from projections.receipts import ReceiptProjection

INCR_BY = "return redis.call('INCRBY', KEYS[1], ARGV[1])"


@pytest_asyncio.fixture(loop_scope="session")
async def client(stack):
    client = redis.Redis.from_url(stack.redis_url)
    yield client
    await client.aclose()


async def test_a_pipeline_with_a_script_runs_after_the_script_cache_is_flushed(client):
    key = f"t:{uuid.uuid4().hex}"
    script = Script(client, INCR_BY)
    await client.script_flush()
    built = 0

    def build(pipe):
        nonlocal built
        built += 1
        script.queue(pipe, [key], [5])
        pipe.get(key)

    assert await run_pipeline(client, build, script) == [5, b"5"]
    assert built == 2  # NOSCRIPT the first time: loaded, then built and run again
    assert await run_pipeline(client, build, script) == [10, b"10"]
    assert built == 3  # loaded now: one round trip
    assert await script([key], [1]) == 11


async def test_projections_write_through_a_flushed_script_cache(client):
    cid = f"c-{uuid.uuid4().hex[:8]}"
    conversations, receipts = ConversationProjection(client), ReceiptProjection(client)
    accepted = MessageAccepted(cid, 3, "m3", "alice", "cm3", "hi", 1_000, Origin("gw"))
    await client.script_flush()
    await conversations.apply([accepted])
    await client.script_flush()
    await receipts.apply([accepted, ReceiptRecorded(cid, "bob", 2, "read", 1_001)])
    seq, last = await conversations.last(cid)
    assert (seq, last["body"]) == (3, "hi")
    assert await receipts.watermarks(cid) == {"alice": {"delivered_seq": 3, "read_seq": 3},
                                              "bob": {"delivered_seq": 2, "read_seq": 2}}


async def test_many_hashes_read_in_one_call_as_hgetall_reads_them(client, monkeypatch):
    import chat.redis_pool

    monkeypatch.setattr(chat.redis_pool, "HGETALL_CHUNK", 3)  # several script calls, in order
    base = f"h:{uuid.uuid4().hex}"
    keys = [f"{base}:{i}" for i in range(7)]
    for i, key in enumerate(keys):
        if i != 4:  # one missing
            await client.hset(key, mapping={f"d{j}": f"gw{i}|{j}" for j in range(i % 3 + 1)})
    await client.set(f"{base}:plain", "x")
    await client.script_flush()  # the first call finds no script
    assert await hgetall_many(client, keys) == [await client.hgetall(k) for k in keys]
    assert (await hgetall_many(client, keys))[4] == {}
    assert await hgetall_many(client, []) == []


async def test_mostly_empty_hashes_read_sparsely_as_hgetall_reads_them(client, monkeypatch):
    import chat.redis_pool

    monkeypatch.setattr(chat.redis_pool, "HGETALL_CHUNK", 4)  # chunks sent together, read back in order
    base = f"h:{uuid.uuid4().hex}"
    keys = [f"{base}:{i}" for i in range(11)]
    for i in (0, 5, 7, 10):
        await client.hset(keys[i], mapping={f"d{j}": f"reg{i}.{j}" for j in range(i % 3 + 1)})
    await client.script_flush()  # the first call finds no script
    expected = [await client.hgetall(k) for k in keys]
    assert await hgetall_many(client, keys, sparse=True) == expected
    assert await hgetall_many(client, keys, sparse=True) == await hgetall_many(client, keys) == expected
    assert await hgetall_many(client, keys[1:5], sparse=True) == [{}, {}, {}, {}]


async def test_the_push_planner_takes_offline_from_what_the_delivery_saw(client):
    from chat.events import ConversationCreated, Member
    from projections.connections import ConnectionRegistry
    from projections.push import DeviceRegistry, PushPlanner

    conversations = ConversationProjection(client)
    cid, alice, bob, carol = (f"{x}-{uuid.uuid4().hex[:6]}" for x in ("c", "alice", "bob", "carol"))
    origin = Origin("gw", "d", None)
    await conversations.apply([ConversationCreated(cid, "group", "g", "", [Member(alice, "admin"), Member(bob, "member"),
                                                                             Member(carol, "member")], alice, 1, origin)])
    devices = DeviceRegistry(client)
    for user in (bob, carol):
        await devices.register(user, "phone", "fcm", f"tok-{user}")
    connections = ConnectionRegistry(client, ttl_s=60)
    await connections.register([(carol, "phone")], "gw")  # carol's phone is connected, says Redis
    planner = PushPlanner(conversations, connections, devices)
    message = MessageAccepted(cid, 1, "m1", alice, "cm1", "hi", 2, origin, None)
    assert {j.user_id for j in await planner.plan([message])} == {bob}
    # The delivery saw bob connected and carol not: that is what counts (no second read).
    assert {j.user_id for j in await planner.plan([message], {bob: {"phone": "gw"}, carol: {}})} == {carol}
