"""Every Redis-using part of the product on a real Redis Cluster (3 masters, a replica each,
Debian's redis-server), through the client ``chat.redis_pool`` makes with
``CHAT_REDIS_CLUSTER=true``: projections (pipelines across slots, scripts on pipelines, a
flushed script cache), rate limits, presence, the socket registry, pub/sub signals, media and
push bookkeeping. A cross-slot script, transaction or multi-key command fails here with
CROSSSLOT; on one Redis it would not."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import pytest_asyncio

from chat import redis_pool
from chat.events import (ConversationCreated, Delivery, MessageAccepted, Member, Origin, PresenceChanged,
                         ReceiptRecorded, Target)
from chat.settings import Settings
from gateway.limits import SEND_PREFIX, TokenBucket
from gateway.upload_limits import UploadLimiter
from infra.redis_cluster import RedisCluster
from projections.connections import ConnectionRegistry
from projections.conversations import ConversationProjection
from projections.media import MediaInfo, MediaProjection
from projections.presence import PresenceProjection
from projections.push import DeviceRegistry
from projections.receipts import ReceiptProjection
from projections.signals import SignalBus


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory):
    with RedisCluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster


@pytest_asyncio.fixture(loop_scope="session")
async def client(redis_cluster):
    client = redis_pool.connect(Settings(redis_url=redis_cluster.url, redis_cluster=True))
    yield client
    await client.aclose()


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_the_client_is_a_cluster_client_only_when_configured(redis_cluster):
    from redis.asyncio.cluster import RedisCluster as ClusterClient

    assert isinstance(redis_pool.connect(Settings(redis_url=redis_cluster.url, redis_cluster=True)), ClusterClient)
    assert not isinstance(redis_pool.connect(Settings(redis_url=redis_cluster.url)), ClusterClient)


async def test_conversations_and_receipts_project_across_slots_through_a_flushed_script_cache(client):
    cids = [uid("c") for _ in range(8)]  # spread over the three masters
    o = Origin("gw")
    created = [ConversationCreated(c, "group", "team", "", [Member("alice", "admin"), Member("bob", "member")],
                                   "alice", 1_000, o) for c in cids]
    sent = [MessageAccepted(c, 1, uid("m"), "alice", uid("cm"), f"hi {c}", 1_001, o) for c in cids]
    conversations, receipts = ConversationProjection(client), ReceiptProjection(client)
    await client.script_flush()
    await conversations.apply(created + sent)
    await client.script_flush()
    await receipts.apply(sent + [ReceiptRecorded(c, "bob", 1, "read", 1_002) for c in cids])
    for c in cids:
        assert set(await conversations.members(c)) == {"alice", "bob"}
        seq, last = await conversations.last(c)
        assert (seq, last["body"]) == (1, f"hi {c}")
        assert (await receipts.watermarks(c))["bob"] == {"delivered_seq": 1, "read_seq": 1}
    assert set(cids) <= set(await conversations.conversation_ids("bob"))


async def test_presence_applies_leases_and_reads_many_users(client):
    presence = PresenceProjection(client, ttl_s=30)
    users, now = [uid("u") for _ in range(6)], int(time.time() * 1000)
    changed = await presence.apply([PresenceChanged(u, "online", now, now) for u in users])
    assert len(changed) == len(users)
    await presence.lease(0, {u: now for u in users}, now)
    assert set(await presence.watched(0)) >= set(users)
    read = await presence.read(users)
    assert all(read[u]["status"] == "online" for u in users)
    await presence.release(0, users)


async def test_rate_limits_and_upload_windows(client):
    bucket, name = TokenBucket(client, SEND_PREFIX, burst=3, per_s=1), uid("u")
    assert [await bucket.take(name) for _ in range(3)] == [0, 0, 0]
    assert await bucket.take(name) > 0
    limiter = UploadLimiter(client, Settings())
    reservation = await limiter.reserve(uid("u"), 1_000)
    await limiter.settle(reservation, 10)


async def test_the_socket_registry_and_signals_reach_a_gateway(client):
    settings = Settings()
    connections, conversations = ConnectionRegistry(client, ttl_s=60), ConversationProjection(client)
    cid, users = uid("c"), [uid("u") for _ in range(4)]
    await conversations.apply([ConversationCreated(cid, "group", "g", "", [Member(u, "member") for u in users],
                                                   users[0], 1, Origin("gw"))])
    await connections.register([(u, "phone") for u in users], "gw-a")
    assert all(v == {"phone": "gw-a"} for v in (await connections.gateways(users)).values())
    bus, got, subscribed = SignalBus(client, settings, conversations, connections), [], asyncio.Event()
    listener = asyncio.create_task(bus.listen("gw-a", got.extend, subscribed))
    try:
        await asyncio.wait_for(subscribed.wait(), 5)
        assert await bus.to_members(cid, b"typing", exclude=users[0]) == 1
        for _ in range(100):
            if got:
                break
            await asyncio.sleep(0.05)
        assert got == [Delivery([Target(u) for u in users[1:]], b"typing")]
    finally:
        listener.cancel()
    await connections.unregister(users[0], "phone", "gw-a")
    assert (await connections.gateways([users[0]]))[users[0]] == {}


async def test_media_and_push_bookkeeping(client):
    media = MediaProjection(client, unsent_ttl_ms=1)
    media_id = uid("m")
    await media.create(MediaInfo(media_id, "alice", "image/png", 10, "00" * 32, 1_000))
    assert (await media.get(media_id)).uploader == "alice"
    devices, user = DeviceRegistry(client), uid("u")
    await devices.register(user, "phone", "fcm", "token-1")
    assert set((await devices.of([user]))[user]) == {"phone"}
