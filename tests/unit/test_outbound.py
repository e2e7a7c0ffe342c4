"""The byte bound on what the gateway holds for one socket (gateway/outbound.py): the outbox,
held-back live frames and the transport's write buffer count; past the bound the socket is
closed with 1013 and what it held is dropped."""

from __future__ import annotations

import asyncio

from gateway.outbound import CLOSE_SLOW, Outbound
from gateway.connection import Connection


class StuckSocket:
    """A socket whose device never reads: a write lands in the transport buffer, then waits
    forever for it to drain (as aiohttp's writer does)."""

    closed = False

    def __init__(self, transport: "Transport | None" = None) -> None:
        self.transport = transport
        self.close_args: dict | None = None
        self.never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def send_frame(self, frame: bytes, _opcode: object) -> None:
        if self.transport is not None:
            self.transport.buffered += len(frame)
        await self.never

    async def close(self, **kwargs: object) -> bool:
        self.close_args = kwargs
        return True


class Transport:
    def __init__(self, buffered: int = 0) -> None:
        self.buffered = buffered
        self.aborted = False

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def abort(self) -> None:
        self.aborted = True
        self.buffered = 0


async def test_a_socket_that_stops_reading_is_closed_past_the_byte_bound(monkeypatch):
    monkeypatch.setattr("gateway.outbound.CLOSE_GRACE_S", 0.1)  # for reading the close frame
    outbound, transport = Outbound(max_bytes=10_000), Transport()
    ws = StuckSocket(transport)
    conn = Connection(ws, "bob", "phone", outbound, transport)
    frame = b'{"type":"message","message":{}}' + b" " * 969  # 1,000 bytes
    for _ in range(10):
        conn.push(frame)
    await asyncio.sleep(0)
    assert not conn.closed and outbound.slow_closed == 0  # exactly at the bound: kept
    conn.push(frame)
    assert conn.closed and outbound.slow_closed == 1
    assert conn.queued == 0 and not conn.outbox  # what it held is dropped
    assert outbound.peak_bytes == 11_000
    for _ in range(100):
        conn.push(frame)  # nothing more is queued for a closed socket
    assert conn.queued == 0 and outbound.slow_closed == 1
    await asyncio.sleep(0.3)  # the device read nothing in the grace: aborted, its buffer freed
    assert ws.close_args is not None and ws.close_args["code"] == CLOSE_SLOW == 1013
    assert b"over 10000 bytes" in ws.close_args["message"]
    assert transport.aborted and transport.buffered == 0


async def test_the_transport_buffer_and_held_frames_count():
    outbound, transport = Outbound(max_bytes=10_000), Transport(buffered=9_500)
    conn = Connection(StuckSocket(), "bob", "phone", outbound, transport)
    conn.push(b'{"type":"pong"}' + b" " * 485)  # 500 bytes: 10,000 with the buffer
    assert not conn.closed
    conn.push(b'{"type":"pong"}')
    assert conn.closed

    held = Connection(StuckSocket(), "bob", "tablet", Outbound(max_bytes=10_000), Transport())
    held.hold_until_sync(60)
    for _ in range(10):
        held.push(b'{"type":"message"' + b" " * 983)
    assert not held.closed and held.held_bytes == 10_000
    held.push(b'{"type":"message"}')
    assert held.closed and held.held == []


async def test_a_replay_waits_for_the_device_to_drain():
    outbound, transport = Outbound(max_bytes=10_000), Transport(buffered=6_000)
    conn = Connection(StuckSocket(), "bob", "phone", outbound, transport)
    waiting = asyncio.create_task(conn.drained())
    await asyncio.sleep(0.05)
    assert not waiting.done()  # over half the bound waits to be written
    transport.buffered = 4_000
    await asyncio.wait_for(waiting, 1)
