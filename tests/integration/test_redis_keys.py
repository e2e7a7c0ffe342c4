"""Ids that look like another key's name, against the real Redis: a user named ``alice:lease``
once turned alice's presence lease into a WRONGTYPE for every lease renewal of its partition and
every presence read that named it. Each id now has keys of its own (``chat.keys``)."""

from __future__ import annotations

import time
import uuid

import pytest_asyncio
import redis.asyncio as redis

from chat.events import ConversationCreated, Member, MembersAdded, Origin, PresenceChanged
from projections.conversations import ConversationProjection
from projections.presence import PresenceProjection


@pytest_asyncio.fixture(loop_scope="session")
async def client(stack):
    client = redis.Redis.from_url(stack.redis_url)
    yield client
    await client.aclose()


def online(user_id: str, at: int) -> PresenceChanged:
    return PresenceChanged(user_id, "online", at, at)


async def test_a_user_named_like_a_lease_does_not_stop_anyones_presence(client):
    alice, bob = f"alice{uuid.uuid4().hex[:8]}", f"bob{uuid.uuid4().hex[:8]}"
    mallory = f"{alice}:lease"
    presence = PresenceProjection(client, ttl_s=60)
    now = int(time.time() * 1000)
    await presence.apply([online(alice, now), online(bob, now)])
    await presence.lease(0, {alice: now, bob: now}, now)
    # mallory signs in on the same partition: her status and lease are hers alone.
    await presence.apply([online(mallory, now + 1)])
    for at in (now + 2, now + 3):  # every heartbeat renews all three, again and again
        await presence.lease(0, {alice: at, bob: at, mallory: at}, at)
    seen = await presence.read([alice, bob, mallory])
    assert seen == {u: {"status": "online", "last_seen": now + 3} for u in (alice, bob, mallory)}
    # And alice still goes offline when she leaves, whatever mallory does.
    await presence.apply([PresenceChanged(alice, "offline", now + 4, now + 4)])
    await presence.release(0, [alice])
    await presence.lease(0, {bob: now + 5, mallory: now + 5}, now + 5)
    seen = await presence.read([alice, mallory])
    assert seen[alice] == {"status": "offline", "last_seen": now + 4}
    assert seen[mallory] == {"status": "online", "last_seen": now + 5}


async def test_a_conversation_named_like_anothers_members_reads_nothing_of_it(client):
    cid = f"g_{uuid.uuid4().hex}"
    conversations = ConversationProjection(client)
    await conversations.apply([
        ConversationCreated(cid, "group", "secret", "", [Member("alice", "admin")], "alice", 1_000,
                            Origin("gw")),
        MembersAdded(cid, "alice", [Member("bob", "member")], 0, 1_001, Origin("gw"))])
    assert set(await conversations.members(cid)) == {"alice", "bob"}
    assert await conversations.get(f"{cid}:members") is None
    assert await conversations.members(f"{cid}:former") == {}


async def test_migrate_keys_renames_the_old_layout_once(client):
    from chat import keys
    from chat.cli.migrate_keys import migrate
    n = uuid.uuid4().hex[:8]
    media, user, cid = f"m{n}", f"u{n}", f"g_{n}"
    await client.hset(f"media:{media}", "uploader", user)
    await client.hset(f"media:{media}:sent", cid, 3)
    await client.hset(f"push:devices:{user}", "phone", b"{}")
    await client.set(f"push:private:{cid}", "0")
    await client.hset(f"conv:{cid}:members", user, "admin")
    await client.sadd(f"user:{user}:convs", cid)
    await client.hset(f"presence:{user}", "status", "online")
    await client.set(f"presence:{user}:lease", 1)  # live state: left to expire
    await client.hset(keys.media(f"x{n}"), "uploader", user)  # already new: untouched
    counts = await migrate(client)
    assert counts["renamed"] >= 7
    assert await client.hget(keys.media(media), "uploader") == user.encode()
    assert await client.hget(keys.media_sent(media), cid) == b"3"
    assert await client.hget(keys.push_devices(user), "phone") == b"{}"
    assert await client.get(keys.push_private(cid)) == b"0"
    assert await client.hget(keys.conversation_members(cid), user) == b"admin"
    assert await client.smembers(keys.user_conversations(user)) == {cid.encode()}
    assert await client.hget(keys.presence(user), "status") == b"online"
    assert await client.get(f"presence:{user}:lease") == b"1"
    assert not await client.exists(f"media:{media}", f"push:devices:{user}", f"conv:{cid}:members")
    assert (await migrate(client))["renamed"] == 0
