"""One socket of this gateway (``Connection``): its outbound frames in order, held back while a
``sync`` replays history, bounded in bytes.

The frames queued during one turn of the event loop (a delivery batch's) are written at its
end in one write to the transport, as WebSocket frames encoded here (``gateway/outbound.py``):
no task or future per frame. Only a socket whose transport is paused (the device reads
slowly) or that compresses gets a writer task, which waits for the transport to drain; an
idle connection holds neither.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from chat import frames
from gateway.outbound import CLOSE_SLOW, DRAIN_POLL_S, Outbound, buffered, close_slow, direct_transport, text_frames

log = logging.getLogger(__name__)

MAX_QUEUED_FRAMES = 10_000
MESSAGE_PREFIX = b'{"type":"message"'
UPDATED_PREFIX = b'{"type":"message_updated"'
HELD_PREFIXES = (MESSAGE_PREFIX, UPDATED_PREFIX)  # live frames a sync's replay may also send
# PROTOCOL.md gives no WebSocket close code a meaning; the server's own are 4000 + the HTTP
# status of the nearest protocol error. 4409 (conflict): a newer socket of the same device
# took over (the client should not reconnect with it).
CLOSE_REPLACED = 4409
# RFC 6455 1013 (try again later), as for a slow socket: the gateway could not keep this socket
# gap-free (Redis failed under it); the client reconnects and syncs.
CLOSE_RETRY = CLOSE_SLOW
FLOOR_S = 10.0  # how long after a replay live frames are checked against it


class Connection:
    """One socket, with its outbound frames in order.

    While a ``sync`` replays history, live ``message`` and ``message_updated`` frames are held
    back (``hold``) and released after the replay, minus what it already sent (``release``): the
    device gets each conversation's messages in seq order and its changes in change_seq order,
    with no gap between the replay and live delivery.

    What it holds (outbox, held frames, the transport's write buffer) is bounded in bytes by
    ``outbound.max_bytes``: past it the socket is closed as too slow (gateway/outbound.py).
    """

    __slots__ = ("ws", "user_id", "device_id", "outbox", "writer", "held", "holds", "grace", "floor",
                 "change_floor", "closed", "queued", "held_bytes", "outbound", "transport", "dirty",
                 "registered")

    def __init__(self, ws: web.WebSocketResponse, user_id: str, device_id: str,
                 outbound: Outbound | None = None, transport: Any = None) -> None:
        self.ws = ws
        self.outbound = outbound or Outbound()
        self.transport = transport  # the socket's asyncio transport, for its write buffer's size
        self.queued = 0  # bytes in the outbox
        self.held_bytes = 0  # bytes in held
        self.user_id = user_id
        self.device_id = device_id
        # A deque only while frames wait (an empty one is over half a KiB, times every idle socket).
        self.outbox: deque[bytes] | tuple[()] = ()
        self.writer: asyncio.Task[None] | None = None
        self.closed = False
        self.dirty = False  # waiting for this turn's flush (``_flush_soon``)
        self.registered = False  # in the shared directory (Registry.add), so renewed by heartbeats
        self.held: list[bytes] = []
        self.holds = 0
        self.grace: asyncio.TimerHandle | None = None
        # After a replay: conversation -> the seq it reached. Live frames still in flight at or
        # below it are dropped; an entry ends with the first newer frame (frames come in order).
        self.floor: dict[str, int] = {}
        self.change_floor: dict[str, int] = {}  # the same for changes, by change_seq

    def push(self, frame: bytes) -> None:
        """Queue a live frame."""
        if self.holds and frame.startswith(HELD_PREFIXES):
            if not self.closed:
                self.held.append(frame)
                self.held_bytes += len(frame)
                self._check_bound()
        elif frame.startswith(UPDATED_PREFIX):
            if not self.change_floor or self._above_change_floor(frame):
                self.replay(frame)
        elif not self.floor or not frame.startswith(MESSAGE_PREFIX) or self._above_floor(frame):
            self.replay(frame)

    def _above_floor(self, frame: bytes) -> bool:
        message = orjson.loads(frame)["message"]
        floor = self.floor.get(message["conversation_id"])
        if floor is None:
            return True
        if message["seq"] <= floor:
            return False
        del self.floor[message["conversation_id"]]
        return True

    def _above_change_floor(self, frame: bytes) -> bool:
        update = orjson.loads(frame)
        floor = self.change_floor.get(update["conversation_id"])
        if floor is None:
            return True
        if update["change_seq"] <= floor:
            return False
        del self.change_floor[update["conversation_id"]]
        return True

    def replay(self, frame: bytes) -> None:
        """Queue a frame now, held or not (sync's own replay)."""
        if self.closed:
            return
        if len(self.outbox) >= MAX_QUEUED_FRAMES:
            self._too_slow(f"too slow: over {MAX_QUEUED_FRAMES} frames queued; reconnect and sync")
            return
        if not self.outbox:
            self.outbox = deque()
        self.outbox.append(frame)  # type: ignore[union-attr]
        self.queued += len(frame)
        if not self._check_bound() and self.writer is None and not self.dirty:
            self.dirty = True
            _flush_soon(self)

    def flush(self) -> None:
        """Write the outbox to the transport in one go, or start the writer task when the
        transport cannot take it now (paused, compressing)."""
        self.dirty = False
        if self.closed or not self.outbox or self.writer is not None:
            return
        transport = direct_transport(self.ws)
        if transport is None:
            self.writer = asyncio.create_task(self._write())
            return
        frames, self.outbox, self.queued = self.outbox, (), 0
        try:
            transport.write(text_frames(frames))
        except (ConnectionError, RuntimeError):
            self.closed = True

    def pending_bytes(self) -> int:
        """Bytes the writer has still to get to the device: the outbox and the transport buffer."""
        return self.queued + buffered(self.transport)

    def _check_bound(self) -> bool:
        """Close the socket if it holds more bytes than the bound; True if it did."""
        if self.outbound.observe(self.queued + self.held_bytes + buffered(self.transport)):
            return False
        self._too_slow(f"too slow: over {self.outbound.max_bytes} bytes queued; reconnect and sync")
        return True

    def _too_slow(self, reason: str) -> None:
        """A device this far behind reconnects and syncs instead: drop what it holds, close it."""
        log.warning("closing slow device %s/%s: %s", self.user_id, self.device_id, reason)
        self.outbound.slow_closed += 1
        self.abandon(reason)

    def abandon(self, reason: str) -> None:
        """Drop what this socket holds and close it with 1013 (try again later): the device
        reconnects and syncs, and what it would have been sent comes with that sync. For a
        socket the gateway can no longer keep gap-free (too slow, a replay cut short)."""
        self.closed = True
        if self.grace is not None:
            self.grace.cancel()
            self.grace = None
        self.outbox, self.held, self.queued, self.held_bytes = (), [], 0, 0
        close_slow(self.ws, self.transport, reason)

    async def drained(self) -> None:
        """Wait until at most half the byte bound waits to be written (or the socket closed):
        a replay paces itself by this, so a reader that keeps up never trips the bound."""
        while not self.closed and self.pending_bytes() > self.outbound.max_bytes // 2:
            await asyncio.sleep(DRAIN_POLL_S)

    def hold(self) -> None:
        """Hold live messages back, with those queued but not yet written."""
        if self.holds == 0 and self.outbox:
            kept: deque[bytes] = deque()
            for frame in self.outbox:
                (self.held if frame.startswith(HELD_PREFIXES) else kept).append(frame)
            self.outbox = kept
            self.queued = sum(map(len, kept))
            self.held_bytes = sum(map(len, self.held))
        self.holds += 1

    def hold_until_sync(self, grace_s: float) -> None:
        """Hold live messages from the start until the first sync ends, or ``grace_s`` passes."""
        self.hold()
        self.grace = asyncio.get_running_loop().call_later(grace_s, self.synced, {})

    def synced(self, replayed: dict[str, int], replayed_changes: dict[str, int] | None = None) -> None:
        """End the hold taken at connect (once), releasing what the replay did not send."""
        if self.grace is not None:
            self.grace.cancel()
            self.grace = None
            self.release(replayed, replayed_changes)

    def release(self, replayed: dict[str, int], replayed_changes: dict[str, int] | None = None) -> None:
        """Stop holding; queue held frames past what the replay sent (conversation -> seq, and
        conversation -> change_seq when it replayed changes)."""
        self.holds -= 1
        if self.holds:
            return
        held, self.held, self.held_bytes = self.held, [], 0
        self.floor = {c: s for c, s in replayed.items() if s > 0}
        self.change_floor = {c: s for c, s in (replayed_changes or {}).items() if s > 0}
        if self.floor or self.change_floor:
            floors = (self.floor, self.change_floor)
            asyncio.get_running_loop().call_later(FLOOR_S, lambda: [f.clear() for f in floors])
        for frame in held:
            self.push(frame)

    async def _write(self) -> None:
        try:
            while self.outbox:
                frame = self.outbox.popleft()  # type: ignore[union-attr]
                self.queued -= len(frame)
                if self.ws.closed or self.closed:
                    self.closed = True
                    return
                await self.ws.send_frame(frame, WSMsgType.TEXT)
        except (ConnectionError, RuntimeError):
            self.closed = True
        finally:
            self.writer = None  # (no await between the last look at the outbox and this)
            if not self.outbox:
                self.outbox = ()

    def close(self) -> None:
        """The socket is gone: write nothing more."""
        self.closed = True
        if self.writer is not None:
            self.writer.cancel()

    def send_now(self, frame: dict[str, Any]) -> None:
        self.replay(frames.encode(frame))


_dirty: list[Connection] = []
_flush_on: list[asyncio.AbstractEventLoop] = []  # the loop a flush is scheduled on, if any


def _flush_soon(conn: Connection) -> None:
    """Flush ``conn`` at the end of this turn of the loop, with every other socket written to
    in it (one callback for all of them)."""
    _dirty.append(conn)
    loop = asyncio.get_running_loop()
    if not _flush_on or _flush_on[0] is not loop:  # (a loop closed before its flush ran: schedule anew)
        _flush_on[:] = [loop]
        loop.call_soon(_flush_dirty)


def _flush_dirty() -> None:
    _flush_on.clear()
    conns = _dirty[:]
    _dirty.clear()
    for conn in conns:
        conn.flush()
