"""The byte bound on what a gateway holds for one socket, and closing a socket past it.

A device that stops reading makes its frames pile up: first in the aiohttp transport's write
buffer (until the writer task waits for it to drain), then in the connection's outbox. Every
socket may hold at most ``max_bytes`` (``CHAT_MAX_QUEUED_BYTES``) in its outbox, its held-back
live frames and its transport's write buffer together; past that the gateway closes it with
``CLOSE_SLOW`` and drops what it held. The device reconnects and syncs (PROTOCOL.md: what a
device missed comes with ``sync``), so nothing is lost.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from dataclasses import dataclass
from typing import Any, Iterable

from aiohttp import WSCloseCode

log = logging.getLogger(__name__)

# RFC 6455 1013 "Try Again Later", the code the frame-count bound has always closed with: the
# client reconnects (after its backoff) and syncs.
CLOSE_SLOW = int(WSCloseCode.TRY_AGAIN_LATER)
# How long a slow socket's close frame may take to reach the device (behind what is already in
# the transport buffer) before the connection is aborted, its buffer freed.
CLOSE_GRACE_S = 5.0
DRAIN_POLL_S = 0.01  # how often a paced replay looks whether the socket drained


@dataclass
class Outbound:
    """The bound shared by one gateway's sockets, and what it saw (read by ``/metrics``)."""

    max_bytes: int = 4_194_304
    peak_bytes: int = 0  # the most one socket held at once since start
    slow_closed: int = 0  # sockets closed for holding more than max_bytes (or too many frames)

    def observe(self, held: int) -> bool:
        """Record a socket's bytes held; True while they are within the bound."""
        if held > self.peak_bytes:
            self.peak_bytes = held
        return held <= self.max_bytes


def buffered(transport: Any) -> int:
    """Bytes in a transport's write buffer (0 without one; a closing transport still holds its
    buffer until the peer has read it)."""
    return 0 if transport is None else int(transport.get_write_buffer_size())


# Unmasked FIN + text frame headers (RFC 6455 5.2): a server's frames are never masked.
_LEN1, _LEN2, _LEN3 = struct.Struct("!BB").pack, struct.Struct("!BBH").pack, struct.Struct("!BBQ").pack


def text_frames(frames: Iterable[bytes]) -> bytes:
    """Encoded JSON texts as WebSocket text frames, one after another, in one buffer."""
    parts: list[bytes] = []
    for frame in frames:
        n = len(frame)
        parts.append(_LEN1(0x81, n) if n < 126 else _LEN2(0x81, 126, n) if n < 65536 else _LEN3(0x81, 127, n))
        parts.append(frame)
    return b"".join(parts)


def direct_transport(ws: Any) -> Any:
    """The transport a socket's frames can be written to straight away, or None: then they go
    through aiohttp's ``send_frame`` (a task that waits for the transport to drain).

    Straight away means: aiohttp's writer compresses nothing on this socket (no
    permessage-deflate negotiated), and its transport is open and not paused (under its
    high-water mark). The writer is aiohttp's private ``_writer``; without it (another
    aiohttp, a test's socket) every frame takes the public path."""
    writer = getattr(ws, "_writer", None)
    if writer is None or getattr(writer, "compress", 1) or ws.closed:
        return None
    transport, protocol = getattr(writer, "transport", None), getattr(writer, "protocol", None)
    if transport is None or transport.is_closing() or getattr(protocol, "_paused", True):
        return None
    return transport


_closing: set[asyncio.Task[None]] = set()


def close_slow(ws: Any, transport: Any, reason: str) -> None:
    """Close a slow socket with ``CLOSE_SLOW`` and ``reason``, then abort its transport so the
    bytes it still buffers are freed even if the device never reads again."""
    task = asyncio.create_task(_close(ws, transport, reason.encode()[:123]))
    _closing.add(task)
    task.add_done_callback(_closing.discard)


async def _close(ws: Any, transport: Any, reason: bytes) -> None:
    """Queue the close frame; give the device ``CLOSE_GRACE_S`` to read it (it is behind what the
    transport buffers); then abort, which frees the buffer whether or not it was read."""
    deadline = asyncio.get_running_loop().time() + CLOSE_GRACE_S
    try:
        await asyncio.wait_for(ws.close(code=CLOSE_SLOW, message=reason, drain=False), CLOSE_GRACE_S)
        while buffered(transport) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(DRAIN_POLL_S * 5)
    except (asyncio.TimeoutError, asyncio.CancelledError, ConnectionError, RuntimeError) as exc:
        log.info("slow socket did not take its close frame in time: %r", exc)
    finally:
        if transport is not None:
            transport.abort()
