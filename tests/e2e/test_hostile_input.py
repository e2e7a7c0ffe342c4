"""Hostile numbers and ids through the running system: each gets ``bad_request`` (HTTP 400 with
the protocol's error body, or an ``error`` frame on a socket that stays open), never a 500 or a
dropped socket."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from tests.client import Client, Device, sign_in_users
from tests.support import System

TOO_BIG = 2**63  # one past the largest signed 64-bit seq


@pytest.fixture(scope="module")
def system(stack, tmp_path_factory):
    system = System(stack, tmp_path_factory.mktemp("e2e-hostile"))
    system.start_worker()
    system.start_gateway()
    yield system
    system.stop()


def is_bad_request(status: int, body: object) -> bool:
    return status == 400 and isinstance(body, dict) and body.get("error", {}).get("code") == "bad_request"


async def still_open(device: Device) -> None:
    """The socket answers a ping after the error (it was not dropped)."""
    await device.send({"type": "ping", "id": "after"})
    await device.wait_for("pong", lambda f: f.get("id") == "after", timeout=10)
    assert not device.ws.closed


async def test_history_seqs_past_64_bits_are_bad_requests(system, session):
    (alice,) = await sign_in_users(session, system.url(), "alice")
    cid = (await alice.create_group("big numbers", []))["conversation_id"]
    for query in ("before_seq=99999999999999999999999", f"after_seq={TOO_BIG}", f"before_seq={TOO_BIG}"):
        status, body = await alice.call("GET", f"/v1/conversations/{cid}/messages?{query}")
        assert is_bad_request(status, body), (query, status, body)
    status, body = await alice.call("GET", f"/v1/conversations/{cid}/messages?after_seq={TOO_BIG - 1}")
    assert (status, body) == (200, {"messages": [], "has_more": False})


@pytest.mark.parametrize("frame", [
    {"type": "receipt", "seq": TOO_BIG, "status": "read"},
    {"type": "sync", "cursors": {"<cid>": TOO_BIG}},
    {"type": "sync", "cursors": {"<cid>": True}},
])
async def test_frames_with_hostile_seqs_get_an_error_and_the_socket_stays_open(system, session, frame):
    (alice,) = await sign_in_users(session, system.url(), "alice")
    cid = (await alice.create_group("frames", []))["conversation_id"]
    device = await alice.device("d1")
    if frame["type"] == "receipt":
        frame = {**frame, "conversation_id": cid}
    else:
        frame = {**frame, "cursors": {cid: frame["cursors"]["<cid>"]}}
    await device.send(frame)
    (error,) = await device.wait_for("error", timeout=10)
    assert error["code"] == "bad_request"
    assert not device.of_type("synced")  # a cursor of true is not taken as 1
    await still_open(device)
    await device.close()


async def test_media_ids_outside_their_alphabet_are_bad_requests(system, session):
    alice, bob = await sign_in_users(session, system.url(), "alice", "bob")
    async with session.post(f"{system.url()}/v1/media", data=b"some notes",
                            headers={**alice.headers, "Content-Type": "text/plain"}) as r:
        assert r.status == 201, await r.text()
        media_id = (await r.json())["media_id"]
    cid = (await alice.create_group("media", [bob.user_id]))["conversation_id"]
    status, ack = await alice.call("POST", f"/v1/conversations/{cid}/messages",
                                   json={"client_msg_id": "m1", "body": "look", "media_id": media_id})
    assert status == 202, ack
    # Once the message is readable, the medium's "sent in" record exists too.
    for _ in range(100):
        status, page = await bob.call("GET", f"/v1/conversations/{cid}/messages")
        if page["messages"]:
            break
        await asyncio.sleep(0.1)
    status, _ = await bob.call("GET", f"/v1/media/{media_id}")
    assert status == 200
    for path in (f"/v1/media/{media_id}:sent", f"/v1/media/{media_id}:sent/thumbnail",
                 f"/v1/media/{media_id.upper()}", "/v1/media/x"):
        for client in (alice, bob):
            status, body = await client.call("GET", path)
            assert is_bad_request(status, body), (path, status, body)
    device = await alice.device("d1")
    await device.send({"type": "send", "conversation_id": cid, "client_msg_id": "m2", "body": "again",
                       "media_id": f"{media_id}:sent"})
    (error,) = await device.wait_for("error", timeout=10)
    assert (error["code"], error["ref"]) == ("bad_request", "m2")
    await still_open(device)
    await device.close()


async def ping_and_reset(url: str, headers: dict[str, str]) -> None:
    """Upgrade a raw socket, send a ping frame and reset the connection (SO_LINGER 0) at once:
    the gateway reads the ping and finds the transport closing when it answers."""
    host, port = url.split("//")[1].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    lines = [f"GET /v1/ws?device_id=reset HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket",
             "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13",
             *(f"{k}: {v}" for k, v in headers.items())]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
    writer.write(bytes([0x89, 0x80, 1, 2, 3, 4]))  # FIN + PING, masked, empty payload
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def test_a_socket_reset_after_a_ping_is_no_gateway_error(system, session):
    """A client gone while the gateway answers its ping (aiohttp raises "Cannot write to closing
    transport" from the socket's read loop) is a disconnect like any other, not an error-level
    "Error handling request" with a traceback in the gateway's log."""
    (alice,) = await sign_in_users(session, system.url(), "alice")
    for _ in range(30):
        await ping_and_reset(system.url(), alice.headers)
    await asyncio.sleep(1.0)
    log = system.gateways[0].log_path.read_text()
    assert "Error handling request" not in log, log[-3000:]
    assert "Cannot write to closing transport" not in log
