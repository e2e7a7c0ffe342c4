"""Per-user limits of PROTOCOL.md through the running system: send rate (WebSocket and HTTP)
and connected devices, with small limits so the tests are fast."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import pytest

from tests.client import Client, Device, eventually, uid
from tests.support import System

BURST, PER_S, MAX_CONNECTIONS = 20, 5, 3


@pytest.fixture(scope="module")
def system(stack, tmp_path_factory):
    system = System(stack, tmp_path_factory.mktemp("e2e-limits"), CHAT_RATE_BURST=str(BURST),
                    CHAT_RATE_PER_S=str(PER_S), CHAT_MAX_CONNECTIONS_PER_USER=str(MAX_CONNECTIONS))
    system.start_worker()
    system.start_gateway()
    yield system
    system.stop()


async def rate_limited_errors(system: System, session: aiohttp.ClientSession) -> float:
    async with session.get(f"{system.url()}/metrics") as r:
        text = await r.text()
    found = re.search(r'^chat_errors_total\{code="rate_limited"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


async def test_websocket_sends_past_the_burst_are_refused_and_the_socket_stays_usable(system, session):
    alice = await Client.sign_in(session, system.url(), uid("alice"))
    a1 = await alice.device("d1")
    cid = (await alice.create_group("burst", []))["conversation_id"]
    errors_before = await rate_limited_errors(system, session)
    for i in range(BURST + 5):  # all at once: far faster than one token back (200 ms)
        await a1.send_message(cid, f"m{i}", f"burst {i}")
    errors = await a1.wait_for("error", count=5)
    acks = await a1.wait_for("ack", count=BURST)
    await asyncio.sleep(0.5)  # nothing more arrives
    assert len(a1.of_type("ack")) == BURST and len(a1.of_type("error")) == 5
    assert sorted(a["seq"] for a in acks) == list(range(1, BURST + 1))  # refused sends used no seq
    assert {a["client_msg_id"] for a in acks} == {f"m{i}" for i in range(BURST)}
    assert [e["code"] for e in errors] == ["rate_limited"] * 5
    assert [e["ref"] for e in errors] == [f"m{i}" for i in range(BURST, BURST + 5)]
    assert all(0 < e["retry_after_ms"] <= 1000 / PER_S for e in errors)
    assert await rate_limited_errors(system, session) == errors_before + 5

    await a1.send({"type": "ping", "id": 1})
    (pong,) = await a1.wait_for("pong")
    assert pong == {"type": "pong", "id": 1}
    await asyncio.sleep(max(e["retry_after_ms"] for e in errors) / 1000 + 0.05)
    await a1.send_message(cid, "later", "after waiting")
    (ack,) = await a1.wait_for("ack", lambda f: f["client_msg_id"] == "later")
    assert ack["seq"] == BURST + 1
    status, page = await alice.call("GET", f"/v1/conversations/{cid}/messages")
    assert [m["client_msg_id"] for m in page["messages"]][-1] == "later" and len(page["messages"]) == BURST + 1
    await a1.close()


async def test_http_send_past_the_burst_gets_429_with_retry_after(system, session):
    alice = await Client.sign_in(session, system.url(), uid("alice"))
    cid = (await alice.create_group("http-burst", []))["conversation_id"]
    url = f"{system.url()}/v1/conversations/{cid}/messages"

    async def post(i: int) -> tuple[int, dict[str, str], dict]:
        async with session.post(url, headers=alice.headers, json={"client_msg_id": f"h{i}", "body": "x"}) as r:
            return r.status, dict(r.headers), await r.json()

    # All at once: waiting for each ack in turn could take longer than one token coming back.
    answers = await asyncio.gather(*(post(i) for i in range(BURST + 1)))
    statuses = sorted(status for status, _, _ in answers)
    assert statuses == [202] * BURST + [429]
    (_, headers, body), = [a for a in answers if a[0] == 429]
    assert headers["Retry-After"] == "1"  # whole seconds, rounded up from <= 200 ms
    assert body["error"]["code"] == "rate_limited"
    assert sorted(b["seq"] for status, _, b in answers if status == 202) == list(range(1, BURST + 1))


async def test_websocket_and_http_spend_the_same_bucket(system, session):
    alice = await Client.sign_in(session, system.url(), uid("alice"))
    a1 = await alice.device("d1")
    cid = (await alice.create_group("shared", []))["conversation_id"]
    for i in range(BURST):
        await a1.send_message(cid, f"w{i}", "ws")
    await a1.wait_for("ack", count=BURST)  # all tokens spent over WebSocket ...
    status, body = await alice.call("POST", f"/v1/conversations/{cid}/messages",
                                    json={"client_msg_id": "h", "body": "http"})
    assert status == 429 and body["error"]["code"] == "rate_limited"  # ... none left over HTTP
    await a1.close()


async def test_a_user_has_at_most_three_connected_devices(system, session):
    alice = await Client.sign_in(session, system.url(), uid("alice"))
    devices = {d: await alice.device(d) for d in ("d1", "d2", "d3")}

    async def refused(device_id: str) -> None:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await alice.device(device_id)
        assert info.value.status == 429

    await refused("d4")
    async with session.get(f"{system.url()}/v1/ws?device_id=d4", headers=alice.headers) as r:
        assert r.status == 429 and int(r.headers["Retry-After"]) >= 1
        assert (await r.json())["error"]["code"] == "rate_limited"
    # A device reconnecting before its old socket is gone replaces its own entry.
    d2_again = await alice.device("d2")
    assert d2_again.of_type("hello")[0]["device_id"] == "d2"
    await refused("d4")
    bob = await Client.sign_in(session, system.url(), uid("bob"))  # others are not limited by alice
    b1 = await bob.device("d1")

    await devices.pop("d1").close()
    d4 = await connect_eventually(alice, "d4")  # d1's slot is free once its entry is gone
    await refused("d1")  # d1 left: coming back is a new connection like any other
    await d4.close()
    d1 = await connect_eventually(alice, "d1")
    for d in (d1, d2_again, b1, *devices.values()):
        await d.close()


async def connect_eventually(client: Client, device_id: str, timeout: float = 5.0) -> Device:
    """Connect once the gateway has dropped the entry of a device that just closed."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            return await client.device(device_id)
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status != 429 or asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.05)


CLOSE_REPLACED = 4409  # the server's close code for a socket replaced by a newer one


async def test_a_device_reconnecting_replaces_its_socket_and_sockets_are_capped(system, session):
    """51 sockets with one device id leave only the newest open; it counts once toward the
    per-user cap and still receives messages."""
    alice = await Client.sign_in(session, system.url(), uid("alice"))
    bob = await Client.sign_in(session, system.url(), uid("bob"))
    sockets = [await alice.device("dev-0") for _ in range(51)]
    newest = sockets[-1]
    await eventually(lambda: sum(not d.ws.closed for d in sockets) == 1, 10, "one socket of dev-0 open")
    assert not newest.ws.closed
    assert {d.ws.close_code for d in sockets[:-1]} == {CLOSE_REPLACED}

    cid = (await bob.create_group("replaced", [alice.user_id]))["conversation_id"]
    b1 = await bob.device("b1")
    await b1.send_message(cid, "m1", "to the newest socket")
    (frame,) = await newest.wait_for("message")
    assert frame["message"]["body"] == "to the newest socket"
    assert all(not d.of_type("message") for d in sockets[:-1])

    # The cap (3) counts sockets: dev-0 is one, two more devices fill it, a fourth is refused.
    others = [await alice.device(d) for d in ("dev-1", "dev-2")]
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await alice.device("dev-3")
    assert info.value.status == 429
    again = await alice.device("dev-1")  # a reconnect replaces dev-1's socket: still three
    await eventually(lambda: others[0].ws.closed, 10, "dev-1's old socket closed")
    open_sockets = [d for d in sockets + others + [again] if not d.ws.closed]
    assert [d.device_id for d in open_sockets] == ["dev-0", "dev-2", "dev-1"]
    for d in (*open_sockets, b1):
        await d.close()


async def test_a_device_reconnecting_through_another_gateway_replaces_its_socket(system, session):
    second = system.gateways[1] if len(system.gateways) > 1 else system.start_gateway()
    alice = await Client.sign_in(session, system.url(), uid("alice"))
    bob = await Client.sign_in(session, system.url(), uid("bob"))
    first = await alice.device("dev-0")
    newer = await alice.device("dev-0", system.url(second))
    await eventually(lambda: first.ws.closed, 10, "the socket on the first gateway closed")
    assert first.ws.close_code == CLOSE_REPLACED and not newer.ws.closed
    cid = (await bob.create_group("moved", [alice.user_id]))["conversation_id"]
    status, _ = await bob.call("POST", f"/v1/conversations/{cid}/messages", json={"client_msg_id": "m", "body": "hi"})
    assert status == 202
    (frame,) = await newer.wait_for("message")
    assert frame["message"]["body"] == "hi"
    await newer.close()
