"""A device that stops reading costs the gateway at most ``CHAT_MAX_QUEUED_BYTES`` (issue 13,
item 7): the gateway closes it with 1013 and a reason, and a reader in the same conversation that
keeps up receives everything."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import socket
import struct
import time
from urllib.parse import urlsplit

import pytest

from tests.client import sign_in_users
from tests.support import System

BOUND = 524_288  # bytes per socket, for this test
BODY = 60_000  # a ~60 KB frame per message
FLOOD = 150  # ~9 MB: far past what the kernel's socket buffers absorb on loopback


@pytest.fixture(scope="module")
def system(stack, tmp_path_factory):
    system = System(stack, tmp_path_factory.mktemp("e2e-slow-reader"), partitions=1,
                    CHAT_MAX_QUEUED_BYTES=str(BOUND), CHAT_RATE_PER_S="1000")
    system.start_worker()
    system.start_gateway()
    yield system
    system.stop()


def stuck_socket(base_url: str, token: str, device_id: str) -> socket.socket:
    """A WebSocket upgraded by hand, with a tiny receive buffer, that the test then leaves unread."""
    url = urlsplit(base_url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((url.hostname, url.port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /v1/ws?device_id={device_id}&token={token} HTTP/1.1\r\nHost: {url.netloc}\r\n"
                  "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def read_until_close(sock: socket.socket, timeout: float = 10.0) -> tuple[int, bytes] | None:
    """Read server frames (unmasked) until a close frame: its (code, reason); None if the
    connection ended without one."""
    sock.settimeout(timeout)
    buffer = b""

    def take(n: int) -> bytes | None:
        nonlocal buffer
        while len(buffer) < n:
            try:
                chunk = sock.recv(1 << 16)
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            buffer += chunk
        out, buffer = buffer[:n], buffer[n:]
        return out

    while (head := take(2)) is not None:
        opcode, length = head[0] & 0x0F, head[1] & 0x7F
        if length >= 126:
            extended = take(2 if length == 126 else 8)
            if extended is None:
                return None
            length = int.from_bytes(extended, "big")
        payload = take(length)
        if payload is None:
            return None
        if opcode == 0x8:
            return struct.unpack("!H", payload[:2])[0], payload[2:]
    return None


async def gauge(system: System, session, name: str) -> float | None:
    async with session.get(f"{system.url()}/metrics") as r:
        found = re.search(rf"^{name} (\S+)$", await r.text(), re.M)
    return float(found.group(1)) if found else None


async def test_a_reader_that_stops_is_closed_within_the_bound_and_others_get_everything(system, session):
    alice, bob, carol = await sign_in_users(session, system.url(), "alice", "bob", "carol")
    cid = (await alice.create_group("flood", [bob.user_id, carol.user_id]))["conversation_id"]
    reader = await carol.device("keeps-up")
    stuck = await asyncio.to_thread(stuck_socket, system.url(), bob.token, "stuck")
    await asyncio.sleep(1.5)  # past the connect's hold (sync_grace_s): live frames flow
    body = "x" * BODY

    async def flood() -> None:
        for i in range(FLOOD):  # one at a time: a keeping-up reader never gets a burst near the bound
            status, answer = await alice.call("POST", f"/v1/conversations/{cid}/messages",
                                              json={"client_msg_id": f"f{i}", "body": body})
            assert status == 202, answer

    flooding = asyncio.create_task(flood())
    deadline = time.monotonic() + 60
    while not await gauge(system, session, "chat_slow_consumer_closes"):
        assert time.monotonic() < deadline and not flooding.done(), "the stuck socket was never closed"
        await asyncio.sleep(0.1)
    # The device wakes up (within the close grace): behind what was buffered, the close frame.
    closed = await asyncio.to_thread(read_until_close, stuck)
    stuck.close()
    assert closed is not None, "the connection ended without a close frame"
    code, reason = closed
    assert code == 1013 and f"over {BOUND} bytes".encode() in reason, closed
    await flooding

    messages = await reader.wait_for("message", count=FLOOD, timeout=60)
    assert [m["message"]["seq"] for m in messages] == list(range(1, FLOOD + 1))
    assert await gauge(system, session, "chat_slow_consumer_closes") == 1  # the reader was never closed
    peak = await gauge(system, session, "chat_outbound_peak_bytes")
    assert peak is not None and peak <= BOUND + BODY + 1_000, peak  # at most one frame past the bound
    await reader.close()


async def test_a_sync_larger_than_the_bound_is_paced_not_closed(system, session):
    """A replay waits for the device to read: a history far past the bound reaches a reader."""
    alice, dave = await sign_in_users(session, system.url(), "alice", "dave")
    cid = (await alice.create_group("history", [dave.user_id]))["conversation_id"]
    count = 3 * BOUND // BODY
    for i in range(count):
        await alice.call("POST", f"/v1/conversations/{cid}/messages", json={"client_msg_id": f"h{i}", "body": "y" * BODY})
    closes = await gauge(system, session, "chat_slow_consumer_closes")
    device = await dave.device("phone")
    await device.send({"type": "sync", "cursors": {}})
    (synced,) = await device.wait_for("synced", timeout=30)
    assert synced["cursors"][cid] == count and len(device.messages(cid)) == count
    assert closes is not None and await gauge(system, session, "chat_slow_consumer_closes") == closes
    await device.close()
