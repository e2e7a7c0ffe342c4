"""Abuse limits of push and media on a real gateway, stream worker, Redis and media store
(limits shortened through settings): push devices per user, uploads per user (count and bytes
per window, 429 with Retry-After), media never sent expires, sent media expires with the last
message that carries it."""

from __future__ import annotations

import asyncio
import io
import time

import pytest
import pytest_asyncio
import redis.asyncio as redis
from PIL import Image

from chat import keys
from media.store import make_media_store
from tests.client import Client, sign_in_users
from tests.support import System

UNSENT_TTL_S = 2.0
RETENTION_S = 7.0
WINDOW_S = 4.0


@pytest.fixture(scope="module")
def system(stack, tmp_path_factory):
    system = System(stack, tmp_path_factory.mktemp("abuse"), partitions=1,
                    CHAT_MAX_PUSH_DEVICES_PER_USER="3", CHAT_MAX_UPLOADS_PER_HOUR="3",
                    CHAT_MAX_UPLOAD_BYTES_PER_HOUR="1000", CHAT_UPLOAD_WINDOW_S=str(WINDOW_S),
                    CHAT_MEDIA_UNSENT_TTL_S=str(UNSENT_TTL_S), CHAT_RETENTION_DAYS=str(RETENTION_S / 86_400),
                    CHAT_MEDIA_SWEEP_INTERVAL_S="0.2")
    system.start_worker()
    system.start_gateway()
    yield system
    system.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def store(system):
    s = make_media_store(system.settings)
    await s.open()
    yield s
    await s.close()


@pytest_asyncio.fixture(loop_scope="session")
async def rds(system):
    c = redis.Redis.from_url(system.settings.redis_url)
    yield c
    await c.aclose()


async def upload(client: Client, data: object, content_type: str = "text/plain") -> tuple[int, dict, dict]:
    async with client.session.post(f"{client.base_url}/v1/media", data=data,
                                   headers={**client.headers, "Content-Type": content_type}) as r:
        return r.status, await r.json(), dict(r.headers)


async def chunked(size: int):
    for _ in range(size // 100):
        yield b"x" * 100


async def test_push_devices_per_user_are_capped(system, session):
    (alice,) = await sign_in_users(session, system.url(), "alice")

    async def register(device_id: str, path: str = "p") -> tuple[int, dict]:
        return await alice.call("POST", "/v1/devices", json={
            "device_id": device_id, "platform": "webhook", "push_token": f"https://hooks.example.com/{path}"})
    assert [(await register(f"d{n}"))[0] for n in range(3)] == [204] * 3
    status, body = await register("d3")
    assert status == 409 and body["error"]["code"] == "conflict", body
    assert "at most 3 push devices" in body["error"]["message"]
    assert (await register("d1", "new-token"))[0] == 204  # re-registering a known device
    assert (await alice.call("DELETE", "/v1/devices/d0"))[0] == 204
    assert (await register("d3"))[0] == 204


async def test_uploads_per_user_are_limited_in_count(system, session):
    (alice,) = await sign_in_users(session, system.url(), "alice")
    for _ in range(3):
        assert (await upload(alice, b"0123456789"))[0] == 201
    status, body, headers = await upload(alice, b"0123456789")
    assert status == 429 and body["error"]["code"] == "rate_limited", body
    assert 1 <= int(headers["Retry-After"]) <= WINDOW_S
    await asyncio.sleep(int(headers["Retry-After"]) + 0.2)
    assert (await upload(alice, b"0123456789"))[0] == 201  # a new window


async def test_uploads_per_user_are_limited_in_bytes(system, session):
    (bob,) = await sign_in_users(session, system.url(), "bob")
    assert (await upload(bob, b"a" * 600))[0] == 201
    status, body, headers = await upload(bob, b"b" * 500)  # Content-Length: past the 400 left
    assert status == 429 and "1000 bytes" in body["error"]["message"] and "Retry-After" in headers, body
    status, body, headers = await upload(bob, chunked(500))  # no length: cut off past the 400 left
    assert status == 429 and "Retry-After" in headers, body
    assert (await upload(bob, b"c" * 400))[0] == 201  # the cut-off upload's bytes were given back
    status, body, _ = await upload(bob, b"e")  # three uploads counted (the cut-off one too)
    assert status == 429 and "at most 3 uploads" in body["error"]["message"], body
    (carol,) = await sign_in_users(session, system.url(), "carol")
    assert (await upload(carol, chunked(300)))[0] == 201  # unused reservation given back ...
    assert (await upload(carol, b"d" * 700))[0] == 201  # ... so 300 + 700 fit


async def gone(store, rds, media_id: str, timeout: float) -> float:
    """Wait until the medium's bytes and keys are gone; returns when (monotonic)."""
    deadline = time.monotonic() + timeout
    while await store.size(media_id) is not None or await rds.exists(keys.media(media_id)):
        assert time.monotonic() < deadline, f"{media_id} still stored after {timeout}s"
        await asyncio.sleep(0.1)
    return time.monotonic()


async def test_media_never_sent_expires(system, session, store, rds):
    (dave,) = await sign_in_users(session, system.url(), "dave")
    status, media, _ = await upload(dave, b"never sent")
    assert status == 201 and await store.size(media["media_id"]) == 10
    started = time.monotonic()
    assert (await dave.call("GET", media["url"]))[0] == 200
    ended = await gone(store, rds, media["media_id"], UNSENT_TTL_S + 5)
    assert ended - started >= UNSENT_TTL_S - 0.5
    assert (await dave.call("GET", media["url"]))[0] == 404
    assert await rds.zscore(keys.media_expiry(), media["media_id"]) is None


async def test_media_expires_with_the_last_message_that_carries_it(system, session, store, rds):
    erin, frank = await sign_in_users(session, system.url(), "erin", "frank")
    status, media, _ = await upload(erin, b"sent twice")
    cid = (await erin.create_group("g", [frank.user_id]))["conversation_id"]
    started = time.monotonic()
    for n in range(2):
        status, body = await erin.call("POST", f"/v1/conversations/{cid}/messages", json={
            "client_msg_id": f"m{n}", "body": "", "media_id": media["media_id"]})
        assert status == 202, body
        await asyncio.sleep(1.5)  # the second message expires later than the first
    await asyncio.sleep(max(0.0, started + UNSENT_TTL_S + 1 - time.monotonic()))
    assert await store.size(media["media_id"]) == 10  # past the unsent TTL: kept, it was sent
    assert (await frank.call("GET", media["url"]))[0] == 200
    ended = await gone(store, rds, media["media_id"], RETENTION_S + 5)
    assert ended - started >= RETENTION_S + 1.5 - 0.5  # not before the second message expired
    assert (await frank.call("GET", media["url"]))[0] == 404


async def test_a_current_avatar_does_not_expire_until_it_is_replaced(system, session, store, rds):
    (gina,) = await sign_in_users(session, system.url(), "gina")
    picture = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(picture, "PNG")
    status, media, _ = await upload(gina, picture.getvalue(), "image/png")
    assert status == 201, media
    started = time.monotonic()
    status, body = await gina.call("PUT", "/v1/users/me", json={"avatar_media_id": media["media_id"]})
    assert status == 200, body
    await asyncio.sleep(max(0.0, started + UNSENT_TTL_S * 2 - time.monotonic()))
    assert await store.size(media["media_id"]) is not None  # twice the TTL: kept, it is the avatar
    assert (await gina.call("PUT", "/v1/users/me", json={"avatar_media_id": None}))[0] == 200
    await gone(store, rds, media["media_id"], UNSENT_TTL_S * 2 + 5)
