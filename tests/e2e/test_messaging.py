"""The running system (a stream worker, two gateways) through WebSocket and HTTP only."""

from __future__ import annotations

import asyncio

import pytest

from tests.client import Client, uid
from tests.support import System


@pytest.fixture(scope="module")
def system(stack, tmp_path_factory):
    system = System(stack, tmp_path_factory.mktemp("e2e-messaging"))
    system.start_worker()
    system.start_gateway()
    system.start_gateway()
    yield system
    system.stop()


async def test_no_or_bad_token_gets_401_before_the_upgrade(system, session):
    url = system.url()
    async with session.get(f"{url}/v1/ws?device_id=d1") as r:
        assert r.status == 401
        assert (await r.json())["error"]["code"] == "unauthorized"
    async with session.get(f"{url}/v1/ws?device_id=d1&token=not-a-jwt") as r:
        assert r.status == 401
    async with session.get(f"{url}/v1/conversations") as r:
        assert r.status == 401


async def test_two_users_three_devices_on_two_gateways(system, session):
    alice = await Client.sign_in(session, system.url(), uid("alice"))
    bob = await Client.sign_in(session, system.url(), uid("bob"))
    a1 = await alice.device("phone")
    a2 = await alice.device("laptop", base_url=system.url(system.gateways[1]))
    b1 = await bob.device("phone")
    group = await alice.create_group("team", [bob.user_id], "the team")
    cid = group["conversation_id"]
    assert group["type"] == "group" and group["name"] == "team" and group["description"] == "the team"
    assert {(m["user_id"], m["role"]) for m in group["members"]} == {(alice.user_id, "admin"), (bob.user_id, "member")}
    for device in (a1, a2, b1):
        await device.wait_for("conversation", lambda f: f["conversation"]["conversation_id"] == cid)

    for i in range(10):
        await a1.send_message(cid, f"m{i}", f"hello {i}")
    acks = await a1.wait_for("ack", lambda f: f["conversation_id"] == cid, count=10)
    assert [a["seq"] for a in acks] == list(range(1, 11))
    for device in (a1, a2, b1):  # the sender's other device too
        await device.wait_for("message", lambda f: f["message"]["conversation_id"] == cid, count=10)
        messages = device.messages(cid)
        assert [m["seq"] for m in messages] == list(range(1, 11))
        assert [m["body"] for m in messages] == [f"hello {i}" for i in range(10)]
        assert all(m["sender_id"] == alice.user_id and m["media"] is None for m in messages)
    assert {a["message_id"] for a in acks} == {m["message_id"] for m in b1.messages(cid)}

    await b1.send_message(cid, "reply", "hi alice")
    (ack,) = await b1.wait_for("ack", lambda f: f["client_msg_id"] == "reply")
    assert ack["seq"] == 11
    await a2.wait_for("message", lambda f: f["message"]["seq"] == 11)
    for d in (a1, a2, b1):
        await d.close()


async def test_history_pages(system, session):
    alice = await Client.sign_in(session, system.url(), uid("alice"))
    a1 = await alice.device("d1")
    cid = (await alice.create_group("notes", []))["conversation_id"]
    for i in range(120):
        await a1.send_message(cid, f"c{i}", f"note {i}")
    await a1.wait_for("ack", count=120, timeout=30)

    status, page = await alice.call("GET", f"/v1/conversations/{cid}/messages")
    assert status == 200 and page["has_more"] is True
    assert [m["seq"] for m in page["messages"]] == list(range(71, 121))  # newest 50, ascending
    status, older = await alice.call("GET", f"/v1/conversations/{cid}/messages?before_seq=71&limit=60")
    assert [m["seq"] for m in older["messages"]] == list(range(11, 71)) and older["has_more"] is True
    status, first = await alice.call("GET", f"/v1/conversations/{cid}/messages?before_seq=11")
    assert [m["seq"] for m in first["messages"]] == list(range(1, 11)) and first["has_more"] is False
    status, after = await alice.call("GET", f"/v1/conversations/{cid}/messages?after_seq=100&limit=5")
    assert [m["seq"] for m in after["messages"]] == [101, 102, 103, 104, 105] and after["has_more"] is True
    assert after["messages"][0]["body"] == "note 100"
    for bad in ("limit=0", "limit=201", "before_seq=x", "after_seq=-1"):
        status, body = await alice.call("GET", f"/v1/conversations/{cid}/messages?{bad}")
        assert status == 400 and body["error"]["code"] == "bad_request", bad
    await a1.close()


async def test_resent_client_msg_id_is_acked_once_and_stored_once(system, session):
    alice = await Client.sign_in(session, system.url(), uid("alice"))
    a1 = await alice.device("d1")
    cid = (await alice.create_group("dedup", []))["conversation_id"]
    for _ in range(3):
        await a1.send_message(cid, "same-id", "only once")
    acks = await a1.wait_for("ack", lambda f: f["client_msg_id"] == "same-id", count=3)
    assert len({(a["seq"], a["message_id"], a["sent_at"]) for a in acks}) == 1
    await a1.send_message(cid, "next", "second")
    (ack,) = await a1.wait_for("ack", lambda f: f["client_msg_id"] == "next")
    assert ack["seq"] == 2
    status, page = await alice.call("GET", f"/v1/conversations/{cid}/messages")
    assert [(m["seq"], m["client_msg_id"]) for m in page["messages"]] == [(1, "same-id"), (2, "next")]
    await a1.close()


async def test_direct_conversation_is_created_once(system, session):
    alice = await Client.sign_in(session, system.url(), uid("alice"))
    bob = await Client.sign_in(session, system.url(), uid("bob"))
    status, first = await alice.call("POST", "/v1/conversations", json={"type": "direct", "peer": bob.user_id})
    assert status == 201 and first["type"] == "direct"
    assert {m["user_id"] for m in first["members"]} == {alice.user_id, bob.user_id}
    status, again = await bob.call("POST", "/v1/conversations", json={"type": "direct", "peer": alice.user_id})
    assert status == 200 and again["conversation_id"] == first["conversation_id"]
    status, body = await alice.call("POST", "/v1/conversations", json={"type": "direct", "peer": alice.user_id})
    assert status == 400


async def test_non_member_is_refused_and_learns_nothing(system, session):
    alice = await Client.sign_in(session, system.url(), uid("alice"))
    mallory = await Client.sign_in(session, system.url(), uid("mallory"))
    cid = (await alice.create_group("private", []))["conversation_id"]
    m1 = await mallory.device("d1")
    await m1.send_message(cid, "sneak", "let me in")
    (err,) = await m1.wait_for("error", lambda f: f.get("ref") == "sneak")
    await m1.send_message("g_does_not_exist", "sneak2", "hello?")
    (err2,) = await m1.wait_for("error", lambda f: f.get("ref") == "sneak2")
    assert err["code"] == err2["code"] == "not_found"
    for path in (f"/v1/conversations/{cid}", f"/v1/conversations/{cid}/messages"):
        status, body = await mallory.call("GET", path)
        assert status == 404 and body["error"]["code"] == "not_found"
    status, body = await mallory.call("POST", f"/v1/conversations/{cid}/messages",
                                      json={"client_msg_id": "x", "body": "hi"})
    assert status == 404
    status, page = await alice.call("GET", f"/v1/conversations/{cid}/messages")
    assert page["messages"] == []
    await m1.close()


async def test_bad_frames_get_errors_and_the_socket_stays_usable(system, session):
    alice = await Client.sign_in(session, system.url(), uid("alice"))
    a1 = await alice.device("d1")
    cid = (await alice.create_group("limits", []))["conversation_id"]
    await a1.ws.send_str("{not json")
    await a1.ws.send_str("[1, 2]")
    await a1.send({"type": "teleport"})
    await a1.send({"type": "send", "conversation_id": cid, "client_msg_id": "nobody", "body": 5})
    await a1.send({"type": "send", "conversation_id": cid, "body": "no client_msg_id"})
    await a1.send({"type": "send", "conversation_id": cid, "client_msg_id": "big", "body": "x" * 65_537})
    await a1.ws.send_bytes(b"\x00\x01")
    errors = await a1.wait_for("error", count=7)
    assert [e["code"] for e in errors] == ["bad_request"] * 5 + ["too_large", "bad_request"]
    assert errors[3]["ref"] == "nobody" and errors[5]["ref"] == "big"
    await a1.send({"type": "ping", "id": 7})
    (pong,) = await a1.wait_for("pong")
    assert pong == {"type": "pong", "id": 7}
    await a1.send_message(cid, "ok", "x" * 65_536)  # exactly at the limit is accepted
    (ack,) = await a1.wait_for("ack")
    assert ack["seq"] == 1  # nothing the bad frames did used a seq
    await a1.close()


async def test_http_send_answers_with_the_ack(system, session):
    alice = await Client.sign_in(session, system.url(), uid("alice"))
    cid = (await alice.create_group("http", []))["conversation_id"]
    status, ack = await alice.call("POST", f"/v1/conversations/{cid}/messages",
                                   json={"client_msg_id": "h1", "body": "over http"})
    assert status == 202 and ack["type"] == "ack" and ack["seq"] == 1 and ack["client_msg_id"] == "h1"
    status, again = await alice.call("POST", f"/v1/conversations/{cid}/messages",
                                     json={"client_msg_id": "h1", "body": "over http"})
    assert status == 202 and again["seq"] == 1 and again["message_id"] == ack["message_id"]
    status, body = await alice.call("POST", f"/v1/conversations/{cid}/messages", data=b"nope")
    assert status == 400 and body["error"]["code"] == "bad_request"


async def test_healthz_and_metrics(system, session):
    async with session.get(f"{system.url()}/healthz") as r:
        body = await r.json()
        assert r.status == 200 and all(body["checks"].values())
    async with session.get(f"{system.url()}/metrics") as r:
        text = await r.text()
        assert r.status == 200 and "chat_connections_open" in text and "chat_send_to_ack_seconds" in text


async def test_v1_describes_the_service_and_root_serves_the_web_client(system, session):
    async with session.get(f"{system.url()}/v1") as r:
        body = await r.json()
        assert r.status == 200 and body["protocol"] == "v1" and body["health"] == "/healthz"
    async with session.get(f"{system.url()}/") as r:
        assert r.status == 200 and r.content_type == "text/html" and "app.js" in await r.text()
    async with session.get(f"{system.url()}/static/app.js") as r:
        assert r.status == 200 and "javascript" in r.content_type
    async with session.get(f"{system.url()}/static/..%2Fhttp.py") as r:
        assert r.status == 404
    async with session.get(f"{system.url()}/nope") as r:
        assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"


async def test_dev_token_validates_input(system, session):
    async with session.post(f"{system.url()}/v1/dev/token", json={"user_id": ""}) as r:
        assert r.status == 400
    async with session.post(f"{system.url()}/v1/dev/token", data=b"{") as r:
        assert r.status == 400
