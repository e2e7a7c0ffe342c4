"""Push notifications through the running system: offline devices (and only they) get one
notification per message through their provider (FCM, APNs, Web Push, webhook: local stand-ins
in tests/push_server.py), private conversations carry no content, failures are retried with
backoff and what keeps failing lands on the dead-letter topic."""

from __future__ import annotations

import json
import time
from collections import Counter

import http_ece
import jwt
import pytest
import pytest_asyncio
from py_vapid import Vapid

from chat.events import PushFailed
from infra.services import free_port
from tests.client import sign_in_users
from tests.push_server import ACCESS_TOKEN, PushEndpoints, webpush_subscription
from tests.support import PartitionReader, System

MAX_ATTEMPTS = 3
BACKOFF_S = 0.4


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def endpoints():
    server = await PushEndpoints(free_port()).start()
    yield server
    await server.stop()


@pytest.fixture(scope="module")
def system(stack, endpoints, tmp_path_factory):
    base = tmp_path_factory.mktemp("e2e-push")
    (base / "fcm.json").write_text(json.dumps(endpoints.service_account()))
    (base / "apns.p8").write_text(endpoints.apns_p8())
    vapid = Vapid()
    vapid.generate_keys()
    vapid.save_key(str(base / "vapid.pem"))
    system = System(stack, base, CHAT_PUSH_BACKOFF_S=str(BACKOFF_S), CHAT_PUSH_MAX_ATTEMPTS=str(MAX_ATTEMPTS),
                    CHAT_PUSH_TIMEOUT_S="3", CHAT_FCM_CREDENTIALS_FILE=str(base / "fcm.json"),
                    CHAT_FCM_ENDPOINT=endpoints.base_url, CHAT_APNS_ENDPOINT=endpoints.base_url,
                    CHAT_APNS_KEY_FILE=str(base / "apns.p8"), CHAT_APNS_KEY_ID="KEY1234567",
                    CHAT_APNS_TEAM_ID="TEAM123456", CHAT_APNS_TOPIC="org.example.chat",
                    CHAT_WEBPUSH_VAPID_KEY_FILE=str(base / "vapid.pem"))
    system.vapid_public = vapid.public_key  # type: ignore[attr-defined]
    system.start_worker()
    system.start_gateway()
    yield system
    system.stop()


async def register(client, device_id: str, platform: str, push_token: str) -> None:
    status, body = await client.call("POST", "/v1/devices", json={
        "device_id": device_id, "platform": platform, "push_token": push_token})
    assert status == 204, body


async def send(client, cid: str, cmid: str, body: str) -> dict:
    status, ack = await client.call("POST", f"/v1/conversations/{cid}/messages", json={"client_msg_id": cmid, "body": body})
    assert status == 202, ack
    return ack


async def test_offline_devices_get_one_push_each_through_their_provider(system, endpoints, session):
    import asyncio
    alice, bob = await sign_in_users(session, system.url(), "alice", "bob")
    cid = (await alice.create_group("pics", [bob.user_id]))["conversation_id"]
    sub, ua_key, auth = webpush_subscription(f"{endpoints.base_url}/wp/{bob.user_id}")
    await register(bob, "android", "fcm", f"fcm-{bob.user_id}")
    await register(bob, "iphone", "apns", f"apns{bob.user_id}")
    await register(bob, "browser", "webpush", json.dumps(sub))
    await register(bob, "laptop", "webhook", f"{endpoints.base_url}/hook/ok-{bob.user_id}")
    await register(alice, "phone", "webhook", f"{endpoints.base_url}/hook/ok-{alice.user_id}")
    laptop = await bob.device("laptop")  # live: gets the frame, not a push

    ack = await send(alice, cid, "s1", "secret text")
    (fcm,) = await endpoints.wait("fcm", "chat-test")
    (apns,) = await endpoints.wait("apns", f"apns{bob.user_id}")
    (webpush,) = await endpoints.wait("webpush", bob.user_id)
    await laptop.wait_for("message", lambda f: f["message"]["seq"] == ack["seq"])

    # FCM HTTP v1: OAuth token from the service account, the v1 message format, private by default.
    assert endpoints.of("fcm-token")[0].claims["iss"] == "push@chat-test.iam.gserviceaccount.com"
    assert fcm.status == 200 and fcm.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    message = fcm.json()["message"]
    assert message["token"] == f"fcm-{bob.user_id}" and message["android"]["collapse_key"] == cid
    assert message["notification"] == {"title": "New message"}
    assert message["data"] == {"type": "message", "conversation_id": cid, "seq": "1", "message_id": ack["message_id"]}
    # APNs: ES256 provider token, its headers, the aps payload.
    assert apns.status == 200 and apns.claims["iss"] == "TEAM123456" and apns.claims["kid"] == "KEY1234567"
    assert (apns.headers["apns-topic"], apns.headers["apns-push-type"], apns.headers["apns-collapse-id"]) == (
        "org.example.chat", "alert", cid)
    assert apns.json()["aps"]["alert"] == {"title": "New message"} and apns.json()["aps"]["thread-id"] == cid
    # Web Push: VAPID auth, aes128gcm that only the subscriber's key decrypts.
    assert webpush.headers["Content-Encoding"] == "aes128gcm" and webpush.headers["TTL"] == "86400"
    token = webpush.headers["Authorization"].split("t=", 1)[1].split(",")[0]
    assert jwt.decode(token, options={"verify_signature": False})["aud"] == endpoints.base_url
    plain = json.loads(http_ece.decrypt(webpush.body, private_key=ua_key, auth_secret=auth, version="aes128gcm"))
    assert plain["conversation_id"] == cid and plain["body"] is None
    assert all(b"secret text" not in r.body for r in endpoints.records)  # private: no content anywhere

    await asyncio.sleep(1.0)  # nothing for the live laptop, nothing for the sender's own phone
    assert endpoints.of("webhook", bob.user_id) == [] and endpoints.of("webhook", alice.user_id) == []

    await laptop.close()  # now offline; and the group opts out of privacy
    status, body = await bob.call("PUT", f"/v1/conversations/{cid}/privacy", json={"private": False})
    assert status == 403  # admins only
    status, body = await alice.call("PUT", f"/v1/conversations/{cid}/privacy", json={"private": False})
    assert status == 200 and body == {"conversation_id": cid, "private": False}
    await asyncio.sleep(0.5)  # the gateway has unregistered the laptop
    await send(alice, cid, "s2", "hello again")
    (hook,) = await endpoints.wait("webhook", bob.user_id)
    payload = hook.json()
    assert (payload["title"], payload["body"], payload["collapse_key"], payload["seq"]) == (
        f"{alice.user_id} in pics", "hello again", cid, 2)
    fcm2 = (await endpoints.wait("fcm", "chat-test", count=2))[1].json()["message"]
    assert fcm2["notification"] == {"title": f"{alice.user_id} in pics", "body": "hello again"}

    await asyncio.sleep(1.0)
    per_device = Counter((r.kind, r.path, r.body) for r in endpoints.records if r.kind != "fcm-token")
    assert set(per_device.values()) == {1}, per_device  # one push per message and device
    assert len(endpoints.of("apns")) == 2 and len(endpoints.of("webpush")) == 2


def dead_letters(system: System, timeout: float, want: int) -> list[PushFailed]:
    readers = [PartitionReader(system.stack.bootstrap, system.settings.push_dead_topic, p)
               for p in range(system.settings.partitions)]
    deadline = time.monotonic() + timeout
    try:
        while True:
            found = [r.event for reader in readers for r in reader.poll(0.1)]
            if len(found) >= want or time.monotonic() > deadline:
                return found
    finally:
        for reader in readers:
            reader.close()


async def test_retries_back_off_and_what_keeps_failing_is_dead_lettered(system, endpoints, session):
    alice, bob = await sign_in_users(session, system.url(), "alice", "bob")
    cid = (await alice.create_group("g", [bob.user_id]))["conversation_id"]
    for name in ("flaky", "down", "gone"):
        await register(bob, name, "webhook", f"{endpoints.base_url}/hook/{name}-{bob.user_id}")
    await send(alice, cid, "r1", "hi")

    flaky = await endpoints.wait("webhook", f"flaky-{bob.user_id}", count=3)
    assert [(r.headers["X-Chat-Push-Attempt"], r.status) for r in flaky] == [("0", 503), ("1", 503), ("2", 200)]
    gaps = [b.at - a.at for a, b in zip(flaky, flaky[1:])]
    assert gaps[0] >= 0.8 * BACKOFF_S and gaps[1] >= 0.8 * 2 * BACKOFF_S, gaps  # exponential backoff
    down = await endpoints.wait("webhook", f"down-{bob.user_id}", count=MAX_ATTEMPTS)
    assert [r.headers["X-Chat-Push-Attempt"] for r in down] == ["0", "1", "2"]

    failed = {f.device_id: f for f in dead_letters(system, 20, want=2) if f.user_id == bob.user_id}
    assert set(failed) == {"down", "gone"}, failed
    assert failed["down"].attempts == MAX_ATTEMPTS and failed["down"].error.startswith("HTTP 500")
    assert failed["gone"].attempts == 1 and failed["gone"].error.startswith("HTTP 410")  # permanent: no retry
    assert len(endpoints.of("webhook", f"gone-{bob.user_id}")) == 1
    import asyncio
    await asyncio.sleep(2 * BACKOFF_S * 2)
    assert len(endpoints.of("webhook", f"down-{bob.user_id}")) == MAX_ATTEMPTS  # no attempt after the last


async def test_device_registration_is_validated(system, session):
    (alice,) = await sign_in_users(session, system.url(), "alice")
    for body in ({"device_id": "d", "platform": "sms", "push_token": "x"},
                 {"device_id": "d", "platform": "fcm", "push_token": ""},
                 {"device_id": "d", "platform": "webhook", "push_token": "file:///etc/passwd"},
                 {"platform": "fcm", "push_token": "x"}):
        status, answer = await alice.call("POST", "/v1/devices", json=body)
        assert status == 400 and answer["error"]["code"] == "bad_request", body
    status, _ = await alice.call("POST", "/v1/devices", json={"device_id": "d", "platform": "fcm", "push_token": "x" * 5000})
    assert status == 413
    status, _ = await alice.call("DELETE", "/v1/devices/d")
    assert status == 204
