"""Blocking, mute, unread mentions and profiles (protocol 1.1) through the running system: a real
broker, Redis, stream worker and gateway, spoken to over HTTP and WebSockets.

Sends do not carry ``mentions`` yet (another change adds them); where a test needs a message that
mentions someone, it writes a ``MessageAccepted`` v2 with ``mentions`` to the events topic itself,
as the sequencer will, after the conversation's last sequenced message: the projector, the
conversation list and push planning then take it like any other.
"""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
import time

import pytest
import pytest_asyncio
import redis as sync_redis
from confluent_kafka import Producer
from PIL import Image

from chat import keys
from chat.codec import default_codec
from chat.events import Event, MessageAccepted, MessageDeleted, Origin, ReceiptRecorded
from infra.services import free_port
from tests.client import sign_in_users, timed_device
from tests.push_server import PushEndpoints
from projections import profiles, social
from tests.support import ROOT, System

DEBOUNCE_S, TTL_S = 1.0, 3.0
HIDDEN = {"status": "offline", "last_seen": None}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def endpoints():
    server = await PushEndpoints(free_port()).start()
    yield server
    await server.stop()


@pytest.fixture(scope="module")
def system(stack, endpoints, tmp_path_factory):
    # One partition: a test writes events to the events topic's partition 0 (``inject``).
    system = System(stack, tmp_path_factory.mktemp("e2e-social"), partitions=1,
                    CHAT_PRESENCE_DEBOUNCE_S=str(DEBOUNCE_S), CHAT_PRESENCE_TTL=str(TTL_S),
                    CHAT_HEARTBEAT_INTERVAL_S="0.5", CHAT_PUSH_BACKOFF_S="0.2", CHAT_PUSH_TIMEOUT_S="3")
    system.start_worker()
    system.start_gateway()
    yield system
    system.stop()


def inject(system: System, *events: Event) -> None:
    """Write events to the events topic as the sequencer does (keyed by conversation id)."""
    codec = default_codec()
    producer = Producer({"bootstrap.servers": system.stack.bootstrap, "acks": "all", "log_level": 0})
    for event in events:
        key = event.conversation_id  # type: ignore[attr-defined]
        producer.produce(system.settings.events_topic, codec.encode(event, key=key), key=key.encode(), partition=0)
    assert producer.flush(15) == 0


def mentioning(cid: str, seq: int, sender: str, mentions: list[str]) -> MessageAccepted:
    return MessageAccepted(conversation_id=cid, seq=seq, message_id=f"inj-{cid}-{seq}", sender_id=sender,
                           client_msg_id=f"inj-{seq}", body=f"hey {' '.join(mentions)}",
                           sent_at=int(time.time() * 1000), origin=Origin("test"), mentions=mentions)


async def send(client, cid: str, cmid: str, body: str = "hi") -> tuple[int, dict]:
    return await client.call("POST", f"/v1/conversations/{cid}/messages", json={"client_msg_id": cmid, "body": body})


async def direct(client, peer: str) -> tuple[int, dict]:
    return await client.call("POST", "/v1/conversations", json={"type": "direct", "peer": peer})


async def block(client, other: str, on: bool = True) -> None:
    status, body = await client.call("PUT" if on else "DELETE", f"/v1/users/me/blocked/{other}")
    assert status == 204, body


async def presence(client, *user_ids: str) -> dict:
    status, body = await client.call("GET", f"/v1/presence?user_ids={','.join(user_ids)}")
    assert status == 200, body
    return body


async def listed(client, cid: str) -> dict:
    status, body = await client.call("GET", "/v1/conversations")
    assert status == 200, body
    (entry,) = [c for c in body["conversations"] if c["conversation_id"] == cid]
    return entry


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


async def upload(client, data: bytes, content_type: str = "image/png") -> str:
    async with client.session.post(f"{client.base_url}/v1/media", data=data,
                                   headers={**client.headers, "Content-Type": content_type}) as r:
        body = await r.json()
        assert r.status == 201, body
        return body["media_id"]


# Blocking

async def test_the_blocked_users_sends_are_refused_with_ref_and_unblock_restores(system, session):
    alice, bob = await sign_in_users(session, system.url(), "alice", "bob")
    status, dm = await direct(bob, alice.user_id)
    assert status == 201, dm
    cid = dm["conversation_id"]
    assert (await send(bob, cid, "b1"))[0] == 202
    await block(alice, bob.user_id)
    await block(alice, bob.user_id)  # idempotent
    assert await alice.call("GET", "/v1/users/me/blocked") == (200, {"user_ids": [bob.user_id]})
    assert await bob.call("GET", "/v1/users/me/blocked") == (200, {"user_ids": []})

    status, body = await send(bob, cid, "b2")
    assert status == 403 and body["error"]["code"] == "forbidden", body
    b_dev = await timed_device(bob, "b")
    await b_dev.send_message(cid, "b3", "over the socket")
    (error,) = await b_dev.wait_for("error")
    assert (error["code"], error["ref"]) == ("forbidden", "b3")
    assert (await send(bob, cid, "b1"))[1]["seq"] == 1  # a re-send of an earlier message: its ack again
    status, ack = await send(alice, cid, "a1")  # the blocker still can
    assert status == 202 and ack["seq"] == 2

    await block(alice, bob.user_id, on=False)
    await block(alice, bob.user_id, on=False)  # idempotent
    assert await alice.call("GET", "/v1/users/me/blocked") == (200, {"user_ids": []})
    status, ack = await send(bob, cid, "b4")
    assert status == 202 and ack["seq"] == 3
    history = (await bob.call("GET", f"/v1/conversations/{cid}/messages"))[1]["messages"]
    assert [m["client_msg_id"] for m in history] == ["b1", "a1", "b4"]
    await b_dev.close()


async def test_the_blocked_user_cannot_create_the_direct_conversation_existing_or_not(system, session):
    alice, bob, carol = await sign_in_users(session, system.url(), "alice", "bob", "carol")
    await block(alice, bob.user_id)  # before any conversation between them
    status, body = await direct(bob, alice.user_id)
    assert status == 403 and body["error"]["code"] == "forbidden", body
    status, dm = await direct(alice, bob.user_id)  # the blocker may
    assert status == 201, dm
    status, body = await direct(bob, alice.user_id)  # exists now: still forbidden, not the conversation
    assert status == 403 and body["error"]["code"] == "forbidden", body
    assert await direct(alice, bob.user_id) == (200, dm)
    # Groups are unaffected.
    group = await carol.create_group("g", [alice.user_id, bob.user_id])
    assert (await send(bob, group["conversation_id"], "g1"))[0] == 202
    await block(alice, bob.user_id, on=False)
    assert await direct(bob, alice.user_id) == (200, dm)


async def test_the_blocker_reads_offline_to_the_blocked_user_and_their_typing_is_dropped(system, session):
    alice, bob, carol = await sign_in_users(session, system.url(), "alice", "bob", "carol")
    dm = (await direct(alice, bob.user_id))[1]["conversation_id"]
    group = (await alice.create_group("g", [bob.user_id, carol.user_id]))["conversation_id"]
    b_dev, c_dev = await timed_device(bob, "b"), await timed_device(carol, "c")
    a_dev = await timed_device(alice, "a")
    of_alice = lambda status=None: lambda f: f["user_id"] == alice.user_id and status in (None, f["status"])  # noqa: E731
    await b_dev.wait_for("presence", of_alice("online"))
    assert (await presence(bob, alice.user_id))[alice.user_id]["status"] == "online"

    await block(alice, bob.user_id)
    hidden = (await b_dev.wait_for("presence", of_alice("offline")))[-1]
    assert hidden == {"type": "presence", "user_id": alice.user_id, **HIDDEN}
    assert (await presence(bob, alice.user_id)) == {alice.user_id: HIDDEN}
    assert (await presence(carol, alice.user_id))[alice.user_id]["status"] == "online"
    # Alice goes and comes back: carol sees both, bob nothing.
    await c_dev.wait_for("presence", of_alice("online"))
    await a_dev.close()
    await c_dev.wait_for("presence", of_alice("offline"), timeout=10)
    a_dev = await timed_device(alice, "a")
    await c_dev.wait_for("presence", of_alice("online"), count=2, timeout=10)
    assert [f["status"] for f in b_dev.of_type("presence", of_alice())] == ["online", "offline"]
    assert (await presence(bob, alice.user_id)) == {alice.user_id: HIDDEN}

    # Bob's typing in the direct conversation is dropped; in the group it reaches alice.
    await b_dev.send({"type": "typing", "conversation_id": dm, "typing": True})
    await b_dev.send({"type": "typing", "conversation_id": group, "typing": True})
    await a_dev.wait_for("typing", lambda f: f["conversation_id"] == group and f["user_id"] == bob.user_id)
    assert a_dev.of_type("typing", lambda f: f["conversation_id"] == dm) == []
    assert b_dev.of_type("error") == []  # dropped quietly
    # Alice's typing still reaches bob (only the blocked user's is dropped).
    await a_dev.send({"type": "typing", "conversation_id": dm, "typing": True})
    await b_dev.wait_for("typing", lambda f: f["conversation_id"] == dm and f["user_id"] == alice.user_id)

    await block(alice, bob.user_id, on=False)  # unblock: bob sees her as she is
    await b_dev.wait_for("presence", of_alice("online"), count=2)
    assert (await presence(bob, alice.user_id))[alice.user_id]["status"] == "online"
    await b_dev.send({"type": "typing", "conversation_id": dm, "typing": True})
    await a_dev.wait_for("typing", lambda f: f["conversation_id"] == dm and f["user_id"] == bob.user_id)
    for device in (a_dev, b_dev, c_dev):
        await device.close()


async def test_bad_block_requests(system, session):
    alice, = await sign_in_users(session, system.url(), "alice")
    for method in ("PUT", "DELETE"):
        status, body = await alice.call(method, f"/v1/users/me/blocked/{alice.user_id}")
        assert status == 400 and body["error"]["code"] == "bad_request", body
        status, body = await alice.call(method, "/v1/users/me/blocked/Not%20An%20Id")
        assert status == 400 and body["error"]["code"] == "bad_request", body
    async with session.put(f"{system.url()}/v1/users/me/blocked/bob") as r:
        assert r.status == 401 and (await r.json())["error"]["code"] == "unauthorized"
    async with session.get(f"{system.url()}/v1/users/me/blocked") as r:
        assert r.status == 401


# Mute and unread mentions

async def test_mute_settings_show_in_the_conversation_list(system, session):
    alice, bob, carol = await sign_in_users(session, system.url(), "alice", "bob", "carol")
    cid = (await alice.create_group("g", [bob.user_id]))["conversation_id"]
    path = f"/v1/conversations/{cid}/settings"
    entry = await listed(bob, cid)
    assert (entry["muted_until"], entry["unread_mentions"]) == (None, 0)
    b_dev = await timed_device(bob, "b")
    assert await bob.call("PUT", path, json={"muted_until": -1}) == (200, {"muted_until": -1})
    assert (await listed(bob, cid))["muted_until"] == -1
    assert (await listed(alice, cid))["muted_until"] is None  # per user
    await b_dev.wait_for("settings", lambda f: f == {"type": "settings", "conversation_id": cid, "muted_until": -1})
    later = int(time.time() * 1000) + 3_600_000
    assert await bob.call("PUT", path, json={"muted_until": later}) == (200, {"muted_until": later})
    assert (await listed(bob, cid))["muted_until"] == later
    past = int(time.time() * 1000) - 1_000
    assert await bob.call("PUT", path, json={"muted_until": past}) == (200, {"muted_until": None})
    assert (await listed(bob, cid))["muted_until"] is None
    assert await bob.call("PUT", path, json={"muted_until": later}) == (200, {"muted_until": later})
    assert await bob.call("PUT", path, json={"muted_until": None}) == (200, {"muted_until": None})
    assert (await listed(bob, cid))["muted_until"] is None
    # Bad values, and non-members.
    for bad in ({}, {"muted_until": "soon"}, {"muted_until": 1.5}, {"muted_until": True}, {"muted_until": -2},
                {"muted_until": 2**63}, [1]):
        status, body = await bob.call("PUT", path, json=bad)
        assert status == 400 and body["error"]["code"] == "bad_request", (bad, body)
    status, body = await carol.call("PUT", path, json={"muted_until": -1})
    assert status == 404 and body["error"]["code"] == "not_found", body
    status, body = await bob.call("PUT", "/v1/conversations/g_nope/settings", json={"muted_until": -1})
    assert status == 404 and body["error"]["code"] == "not_found", body
    await b_dev.close()


async def test_unread_mentions_count_messages_after_the_read_mark_that_mention_the_caller(system, session):
    alice, bob, carol = await sign_in_users(session, system.url(), "alice", "bob", "carol")
    cid = (await alice.create_group("g", [bob.user_id, carol.user_id]))["conversation_id"]
    for i in (1, 2):
        assert (await send(alice, cid, f"a{i}"))[0] == 202
    inject(system, mentioning(cid, 3, alice.user_id, [bob.user_id]),
           mentioning(cid, 4, alice.user_id, [carol.user_id]),
           mentioning(cid, 5, alice.user_id, [bob.user_id, carol.user_id]))

    async def counts() -> tuple[int, int, int]:
        return tuple([(await listed(c, cid))["unread_mentions"] for c in (alice, bob, carol)])  # type: ignore[return-value]

    latest: list[tuple[int, int, int]] = []

    async def poll(expected: tuple[int, int, int]) -> None:
        async def check() -> bool:
            latest.append(await counts())
            return latest[-1] == expected
        deadline = time.monotonic() + 15
        while not await check():
            assert time.monotonic() < deadline, f"unread_mentions {latest[-1]}, expected {expected}"
            await asyncio.sleep(0.1)

    await poll((0, 2, 2))
    inject(system, ReceiptRecorded(cid, bob.user_id, 3, "read", int(time.time() * 1000)))
    await poll((0, 1, 2))
    client = sync_redis.Redis.from_url(system.settings.redis_url)
    assert client.zrange(keys.mentions(cid, bob.user_id), 0, -1) == [b"5"]  # read ones are forgotten
    client.close()
    inject(system, ReceiptRecorded(cid, carol.user_id, 5, "read", int(time.time() * 1000)))
    await poll((0, 1, 0))
    # A deleted message no longer counts as an unread mention.
    inject(system, MessageDeleted(cid, 5, 1, "del-5", alice.user_id, int(time.time() * 1000), Origin("test"),
                                  mentions=[bob.user_id, carol.user_id]))
    await poll((0, 0, 0))


async def test_a_muted_member_gets_pushes_only_for_messages_that_mention_them(system, endpoints, session):
    alice, bob, carol = await sign_in_users(session, system.url(), "alice", "bob", "carol")
    cid = (await alice.create_group("g", [bob.user_id, carol.user_id]))["conversation_id"]
    for client in (bob, carol):
        status, body = await client.call("POST", "/v1/devices", json={
            "device_id": "phone", "platform": "webhook",
            "push_token": f"{endpoints.base_url}/hook/ok-{client.user_id}"})
        assert status == 204, body

    def pushed(client) -> list[int]:
        return [r.json()["seq"] for r in endpoints.of("webhook", client.user_id)]

    settings = f"/v1/conversations/{cid}/settings"
    assert (await bob.call("PUT", settings, json={"muted_until": -1}))[0] == 200
    assert (await send(alice, cid, "s1"))[0] == 202
    await endpoints.wait("webhook", carol.user_id, count=1)
    assert (await bob.call("PUT", settings, json={"muted_until": None}))[0] == 200
    assert (await send(alice, cid, "s2"))[0] == 202
    await endpoints.wait("webhook", bob.user_id, count=1)
    later = int(time.time() * 1000) + 3_600_000
    assert (await bob.call("PUT", settings, json={"muted_until": later}))[0] == 200
    assert (await send(alice, cid, "s3"))[0] == 202
    await endpoints.wait("webhook", carol.user_id, count=3)
    inject(system, mentioning(cid, 4, alice.user_id, [bob.user_id]))
    await endpoints.wait("webhook", bob.user_id, count=2)
    await endpoints.wait("webhook", carol.user_id, count=4)
    await asyncio.sleep(1.0)  # nothing more comes for bob
    assert pushed(carol) == [1, 2, 3, 4]
    assert pushed(bob) == [2, 4]  # muted for 1 (until unmuted) and 3 (until later); 4 mentions him


# Profiles

async def test_profiles_set_read_framed_and_the_avatar_downloaded_by_contacts_only(system, session):
    alice, bob, carol = await sign_in_users(session, system.url(), "alice", "bob", "carol")
    await alice.create_group("g", [bob.user_id])
    a_dev, b_dev, c_dev = (await timed_device(alice, "a"), await timed_device(bob, "b"),
                           await timed_device(carol, "c"))
    default = {"user_id": carol.user_id, "display_name": carol.user_id, "avatar_url": None}
    assert await bob.call("GET", f"/v1/users?ids={carol.user_id}") == (200, {carol.user_id: default})

    image = png()
    media_id = await upload(alice, image)
    status, profile = await alice.call("PUT", "/v1/users/me", json={"display_name": "Alice ✨ Ü",
                                                                      "avatar_media_id": media_id})
    expected = {"user_id": alice.user_id, "display_name": "Alice ✨ Ü", "avatar_url": f"/v1/media/{media_id}"}
    assert (status, profile) == (200, expected)
    assert await carol.call("GET", f"/v1/users?ids={alice.user_id},{carol.user_id}") == (
        200, {alice.user_id: expected, carol.user_id: default})
    for device in (a_dev, b_dev):  # the user's own devices and their contacts'
        (frame,) = await device.wait_for("profile")
        assert frame == {"type": "profile", "profile": expected}

    # The avatar: its owner and contacts may download it, a stranger may not.
    for client in (alice, bob):
        async with session.get(f"{system.url()}{profile['avatar_url']}", headers=client.headers) as r:
            assert r.status == 200 and await r.read() == image
    async with session.get(f"{system.url()}{profile['avatar_url']}", headers=carol.headers) as r:
        assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"

    # Only what is given changes; a null avatar removes it (and contacts' access with it).
    status, renamed = await alice.call("PUT", "/v1/users/me", json={"display_name": "Al"})
    assert (status, renamed) == (200, {**expected, "display_name": "Al"})
    status, plain = await alice.call("PUT", "/v1/users/me", json={"avatar_media_id": None})
    assert (status, plain) == (200, {**expected, "display_name": "Al", "avatar_url": None})
    await b_dev.wait_for("profile", count=3)
    assert b_dev.of_type("profile")[-1]["profile"] == plain
    async with session.get(f"{system.url()}/v1/media/{media_id}", headers=bob.headers) as r:
        assert r.status == 404
    await asyncio.sleep(0.5)
    assert c_dev.of_type("profile") == []  # shares no conversation with alice
    for device in (a_dev, b_dev, c_dev):
        await device.close()


async def test_bad_profile_requests(system, session):
    alice, bob = await sign_in_users(session, system.url(), "alice", "bob")
    bobs = await upload(bob, png())
    mine_not_image = await upload(alice, b"\x00" * 16, "audio/ogg")
    bad_bodies = [{}, {"display_name": ""}, {"display_name": "x" * 65}, {"display_name": None},
                  {"display_name": 7}, {"display_name": "evil\u202e"}, {"display_name": "bell\x07"},
                  {"display_name": "zero\u200bwidth"}, {"display_name": "new\nline"},
                  {"avatar_media_id": "nope"}, {"avatar_media_id": 5}, {"avatar_media_id": bobs},
                  {"avatar_media_id": "0" * 32}, {"avatar_media_id": mine_not_image},
                  {"display_name": "fine", "avatar_media_id": bobs}]
    for bad in bad_bodies:
        status, body = await alice.call("PUT", "/v1/users/me", json=bad)
        assert status == 400 and body["error"]["code"] == "bad_request", (bad, body)
    status, body = await alice.call("PUT", "/v1/users/me", data=b"not json")
    assert status == 400 and body["error"]["code"] == "bad_request"
    # 64 code points (not bytes) is fine: none of the refusals above changed anything.
    name = "é" * 64
    assert await alice.call("PUT", "/v1/users/me", json={"display_name": name}) == (
        200, {"user_id": alice.user_id, "display_name": name, "avatar_url": None})
    for query in ("", "?ids=", "?ids=Bad%20Id"):
        status, body = await alice.call("GET", f"/v1/users{query}")
        assert status == 400 and body["error"]["code"] == "bad_request", (query, body)
    status, body = await alice.call("GET", "/v1/users?ids=" + ",".join(f"u{i}" for i in range(501)))
    assert status == 413 and body["error"]["code"] == "too_large"
    async with session.put(f"{system.url()}/v1/users/me", json={"display_name": "x"}) as r:
        assert r.status == 401


# Rebuild

def owned_state(system: System, module) -> dict:
    client = sync_redis.Redis.from_url(system.settings.redis_url)
    state = {}
    try:
        for pattern in module.SCAN_PATTERNS:
            for key in client.scan_iter(match=pattern, count=1000):
                if module.OWNED_KEYS.fullmatch(key.decode()):
                    kind = client.type(key).decode()
                    state[key.decode()] = (client.hgetall(key) if kind == "hash" else
                                           sorted(client.smembers(key)) if kind == "set" else
                                           client.zrange(key, 0, -1, withscores=True))
    finally:
        client.close()
    return state


async def test_chat_rebuild_social_and_profiles_gives_the_live_projections_back(system, session):
    alice, bob = await sign_in_users(session, system.url(), "alice", "bob")
    cid = (await alice.create_group("g", [bob.user_id]))["conversation_id"]
    await block(alice, bob.user_id)
    assert (await bob.call("PUT", f"/v1/conversations/{cid}/settings", json={"muted_until": -1}))[0] == 200
    assert (await alice.call("PUT", "/v1/users/me", json={"display_name": "Rebuilt"}))[0] == 200
    inject(system, mentioning(cid, 1, alice.user_id, [bob.user_id]))
    deadline = time.monotonic() + 15
    while (await listed(bob, cid))["unread_mentions"] != 1:
        assert time.monotonic() < deadline, "the mention was not projected"
        await asyncio.sleep(0.1)
    live = {"social": owned_state(system, social), "profiles": owned_state(system, profiles)}
    assert keys.blocked(alice.user_id) in live["social"] and keys.muted(cid) in live["social"]
    assert keys.mentions(cid, bob.user_id) in live["social"] and keys.profile(alice.user_id) in live["profiles"]

    client = sync_redis.Redis.from_url(system.settings.redis_url)
    client.delete(keys.blocked(alice.user_id), keys.profile(alice.user_id))
    client.hset(keys.muted(cid), "mallory", -1)
    client.zadd(keys.mentions(cid, "mallory"), {"1": 1})
    client.set("unrelated", 1)
    scratch = (int(system.settings.redis_url.rsplit("/", 1)[1]) + 8) % 16
    sync_redis.Redis.from_url(system.settings.redis_url.rsplit("/", 1)[0] + f"/{scratch}").flushdb()
    assert {"social": owned_state(system, social), "profiles": owned_state(system, profiles)} != live

    env = {**os.environ, **system.env}
    for name in ("social", "profiles"):
        done = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "chat.cli", "rebuild", name,
                                                        "--scratch-db", str(scratch), "--no-progress"],
                                       env=env, cwd=ROOT, text=True, capture_output=True, timeout=180)
        assert done.returncode == 0, done.stderr
    assert {"social": owned_state(system, social), "profiles": owned_state(system, profiles)} == live
    assert client.get("unrelated") == b"1"
    client.close()
