"""A minimal WebSocket client (RFC 6455) for the load generator: ``loadgen --client raw``.

aiohttp's client hands each received frame through a queue to a reader task: a task switch
and a ``receive()`` call per frame. A 10,000-member group's message is 10,000 frames at once
on one machine with the server, and the load generator's own CPU then decided when the last
member "got" it. Here frames are parsed in the protocol's ``data_received`` and handed to a
callback there and then, timestamped on arrival.

It speaks just what the load generator needs: ``ws://`` only, no extensions (no
permessage-deflate is offered, so the server sends plain frames), text frames out (masked, as
a client must), text and binary frames in (continuations joined), ping answered with pong,
close answered and recorded.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import struct
from typing import Callable
from urllib.parse import urlsplit

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 1.3
_TEXT, _BINARY, _CLOSE, _PING, _PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def _mask(payload: bytes, key: bytes) -> bytes:
    """``payload`` XOR the repeated 4-byte ``key`` (RFC 6455 5.3), as one big integer."""
    n = len(payload)
    if not n:
        return b""
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


def client_frame(opcode: int, payload: bytes) -> bytes:
    """One masked FIN frame."""
    key = os.urandom(4)
    n = len(payload)
    head = (struct.pack("!BB", 0x80 | opcode, 0x80 | n) if n < 126 else
            struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n) if n < 65536 else
            struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n))
    return head + key + _mask(payload, key)


class FrameParser:
    """Server frames from a byte stream: ``feed`` returns the complete ``(opcode, payload)``
    messages in it (continuation frames joined), keeping any partial frame for the next."""

    def __init__(self) -> None:
        self.buf = b""
        self.partial: list[bytes] = []
        self.partial_op = 0

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buf = self.buf + data if self.buf else data
        out: list[tuple[int, bytes]] = []
        pos, end = 0, len(buf)
        while end - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            n, head = b1 & 0x7F, 2
            if n == 126:
                if end - pos < 4:
                    break
                n, head = struct.unpack_from("!H", buf, pos + 2)[0], 4
            elif n == 127:
                if end - pos < 10:
                    break
                n, head = struct.unpack_from("!Q", buf, pos + 2)[0], 10
            if b1 & 0x80:
                raise ValueError("a server frame must not be masked")
            if end - pos < head + n:
                break
            payload = buf[pos + head:pos + head + n]
            pos += head + n
            opcode = b0 & 0x0F
            if opcode >= 0x8:  # control frames come whole, even between fragments
                out.append((opcode, payload))
            elif b0 & 0x80 and not self.partial:
                out.append((opcode, payload))
            else:
                if opcode:
                    self.partial_op = opcode
                self.partial.append(payload)
                if b0 & 0x80:
                    out.append((self.partial_op, b"".join(self.partial)))
                    self.partial = []
        self.buf = buf[pos:]
        return out


class RawWebSocket(asyncio.Protocol):
    """One client connection; ``on_message(payload, arrived)`` is called for each text or
    binary message from ``data_received``, ``arrived`` being ``clock()`` when its bytes came."""

    def __init__(self, on_message: Callable[[bytes, float], None], clock: Callable[[], float]) -> None:
        self.on_message = on_message
        self.clock = clock
        self.transport: asyncio.Transport | None = None
        self.parser = FrameParser()
        self.handshake = b""
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.opened.add_done_callback(lambda f: f.cancelled() or f.exception())  # (read by connect, or moot)
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.close_code: int | None = None
        self.key = base64.b64encode(os.urandom(16))

    @property
    def closed(self) -> bool:
        return self.done.done() or self.close_code is not None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        arrived = self.clock()
        if not self.opened.done():
            self.handshake += data
            head, sep, rest = self.handshake.partition(b"\r\n\r\n")
            if not sep:
                return
            if not self._check_handshake(head) or not rest:
                return
            data = rest
        try:
            messages = self.parser.feed(data)
        except ValueError as exc:
            self._fail(exc)
            return
        for opcode, payload in messages:
            if opcode in (_TEXT, _BINARY):
                self.on_message(payload, arrived)
            elif opcode == _PING:
                self._write(client_frame(_PONG, payload))
            elif opcode == _CLOSE:
                self.close_code = struct.unpack_from("!H", payload)[0] if len(payload) >= 2 else 1005
                self._write(client_frame(_CLOSE, payload[:2]))
                if self.transport is not None:
                    self.transport.close()

    def _check_handshake(self, head: bytes) -> bool:
        """The server's answer to the upgrade: True if it switched protocols as asked."""
        status, *lines = head.split(b"\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines)}
        accept = base64.b64encode(hashlib.sha1(self.key + _GUID).digest())
        if status.split(b" ")[1:2] != [b"101"] or headers.get(b"sec-websocket-accept") != accept:
            self._fail(ConnectionError(f"WebSocket handshake refused: {status.decode(errors='replace')}"))
            return False
        self.opened.set_result(None)
        return True

    def _fail(self, exc: BaseException) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed during the handshake"))
        if self.close_code is None:
            self.close_code = 1006
        if not self.done.done():
            self.done.set_result(None)

    # --- what the load generator calls, as on aiohttp's ClientWebSocketResponse ---------

    async def send_str(self, text: str) -> None:
        if self.closed:
            raise ConnectionResetError("the WebSocket is closed")
        self._write(client_frame(_TEXT, text.encode()))

    async def close(self, timeout: float = 5.0) -> None:
        """Send a close frame, wait for the server's answer (or ``timeout``), then drop the connection."""
        if not self.done.done():
            self._write(client_frame(_CLOSE, struct.pack("!H", 1000)))
            try:
                await asyncio.wait_for(asyncio.shield(self.done), timeout)
            except asyncio.TimeoutError:
                pass
        if self.transport is not None:
            self.transport.abort()
        if self.close_code is None:
            self.close_code = 1000


async def connect(url: str, headers: dict[str, str], on_message: Callable[[bytes, float], None],
                  clock: Callable[[], float], timeout: float = 20.0) -> RawWebSocket:
    """Open ``url`` (``ws://host:port/path?query``) with ``headers`` and complete the handshake."""
    parts = urlsplit(url)
    if parts.scheme != "ws":
        raise ValueError(f"only ws:// URLs: {url}")
    loop = asyncio.get_running_loop()
    _, proto = await asyncio.wait_for(loop.create_connection(
        lambda: RawWebSocket(on_message, clock), parts.hostname, parts.port or 80), timeout)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"GET {target} HTTP/1.1", f"Host: {parts.netloc}", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {proto.key.decode()}", "Sec-WebSocket-Version: 13",
             *(f"{k}: {v}" for k, v in headers.items())]
    proto._write(("\r\n".join(lines) + "\r\n\r\n").encode())
    try:
        await asyncio.wait_for(asyncio.shield(proto.opened), timeout)
    except BaseException:
        if proto.transport is not None:
            proto.transport.abort()
        raise
    return proto
