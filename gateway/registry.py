"""This gateway's sockets, and the requests waiting for an answer from the stream workers.

Each connection has an outbound queue drained by its own writer task, so frames reach a
device in the order the delivery topic holds them and a slow socket delays nobody else. The
task exists only while there is something to write: an idle connection holds none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict, deque
from typing import Any, AsyncIterator

import orjson
from aiohttp import WSCloseCode, WSMsgType, web
from redis.exceptions import RedisError

from chat import frames
from chat.errors import Unavailable
from chat.events import Delivery
from projections.connections import ConnectionRegistry
from gateway.outbound import CLOSE_SLOW, DRAIN_POLL_S, Outbound, buffered, close_slow
from projections.signals import REPLACED

log = logging.getLogger(__name__)

MAX_QUEUED_FRAMES = 10_000
HEARTBEAT_CHUNK = 200  # users per step of a heartbeat (connection directory, presence)


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
                 "change_floor", "closed", "queued", "held_bytes", "outbound", "transport", "registered")

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
        if not self._check_bound() and self.writer is None:
            self.writer = asyncio.create_task(self._write())

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


class DeviceLocks:
    """One lock per ``(user, device)``, kept only while held or awaited: a socket's registration
    and the unregistration of an older socket of the same device here run one after the other.
    (Both name this gateway, so the compare-and-delete alone cannot tell them apart: a reconnect
    whose registration reached Redis first had its entry deleted by the older socket's goodbye.)"""

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str], tuple[asyncio.Lock, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def __call__(self, user_id: str, device_id: str) -> AsyncIterator[None]:
        key = (user_id, device_id)
        lock, users = self._locks.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._locks[key]


class Registry:
    def __init__(self, gateway_id: str, directory: ConnectionRegistry, outbound: Outbound | None = None) -> None:
        self.gateway_id = gateway_id
        self.locks = DeviceLocks()
        self.outbound = outbound or Outbound()  # every socket's byte bound (``Connection``)
        self.directory = directory
        self.by_user: dict[str, dict[str, set[Connection]]] = defaultdict(lambda: defaultdict(set))
        self.pending: dict[str, asyncio.Future[tuple[int, bytes]]] = {}
        self.closing: set[asyncio.Task[bool]] = set()

    def __len__(self) -> int:
        return sum(len(c) for devices in self.by_user.values() for c in devices.values())

    def devices(self, user_id: str) -> list[str]:
        """The user's devices connected to this gateway."""
        return sorted(self.by_user.get(user_id, ()))

    async def add(self, conn: Connection) -> None:
        """Register a socket; from here on frames can be pushed to ``conn``, so its ``hello`` must
        already be queued. A device holds one socket: this one replaces (closes) any other of the
        same device here, so the per-user cap on devices caps sockets too."""
        devices = self.by_user[conn.user_id]
        for old in devices.get(conn.device_id, ()):
            self._replace(old)
        devices[conn.device_id] = {conn}
        try:
            async with self.locks(conn.user_id, conn.device_id):
                await self.directory.register([(conn.user_id, conn.device_id)], self.gateway_id)
            conn.registered = True
        except BaseException:
            # Not in the directory, so no delivery would be routed here: forget the socket (a
            # heartbeat must not register a device whose socket is gone) and let the caller close it.
            self._forget(conn)
            raise

    def _replace(self, old: Connection) -> None:
        """Close a socket that a newer one of its device replaced; its handler's ``remove``
        then finds it gone already and leaves the device's entry to the newer one."""
        old.close()
        if old.grace is not None:
            old.grace.cancel()
            old.grace = None
        task = asyncio.create_task(old.ws.close(code=CLOSE_REPLACED, message=b"replaced by a newer connection"))
        self.closing.add(task)
        task.add_done_callback(self.closing.discard)

    def replaced_elsewhere(self, user_id: str, device_id: str) -> None:
        """The device connected through another gateway: close its sockets here."""
        devices = self.by_user.get(user_id)
        if devices is None or device_id not in devices:
            return
        for old in devices.pop(device_id):
            self._replace(old)
        if not devices:
            del self.by_user[user_id]

    async def remove(self, conn: Connection) -> None:
        """The socket closed: forget it here, and its directory entry if no newer socket of the
        device took it over. With Redis away the entry is left to expire (``connection_ttl_s``):
        a newer registration of the device, here or on another gateway, overwrites it."""
        conn.close()
        if conn.grace is not None:
            conn.grace.cancel()
        if self._forget(conn):
            try:
                async with self.locks(conn.user_id, conn.device_id):
                    await self.directory.unregister(conn.user_id, conn.device_id, self.gateway_id)
            except RedisError as exc:
                log.warning("could not unregister %s/%s: %s", conn.user_id, conn.device_id, exc)

    def _forget(self, conn: Connection) -> bool:
        """Drop ``conn`` from the local map, without awaiting (another device of the same user
        may be closing at the same moment); True if it was its device's only socket here."""
        devices = self.by_user.get(conn.user_id)
        if devices is None:
            return False
        conns = devices.get(conn.device_id)
        device_gone = conns is not None and conn in conns and len(conns) == 1
        if conns is not None:
            conns.discard(conn)
            if not conns:
                del devices[conn.device_id]
        if not devices:
            del self.by_user[conn.user_id]
        return device_gone

    async def refresh(self, users: list[str] | None = None, chunk: int = HEARTBEAT_CHUNK) -> None:
        """Heartbeat: keep this gateway's entries (of ``users``, default all) alive in the shared
        directory, ``chunk`` users per round trip (one pipeline for thousands of users held the
        loop for tens of ms; and each chunk is read when it goes, so a device gone meanwhile is
        not written back).

        A registered socket whose entry is found gone or another gateway's had its live frames
        routed elsewhere (a write lost in a Redis failover, another gateway's registration or
        renewal that landed late): it is closed with 1013, and the device reconnects, registers
        and syncs what it missed. The entry is not written back over another gateway's."""
        users = list(self.by_user) if users is None else users
        for i in range(0, len(users), chunk):
            held = {(u, d): [c for c in conns if c.registered]
                    for u in users[i:i + chunk] for d, conns in self.by_user.get(u, {}).items()}
            devices: dict[str, list[str]] = defaultdict(list)
            for user_id, device_id in (key for key, conns in held.items() if conns):
                devices[user_id].append(device_id)
            for user_id, device_id in await self.directory.refresh(devices, self.gateway_id):
                for conn in held[(user_id, device_id)]:
                    if not conn.closed:
                        log.warning("directory entry of %s/%s lost; closing it", user_id, device_id)
                        conn.abandon("this gateway lost the device's directory entry; reconnect and sync")

    def dispatch(self, deliveries: list[Delivery]) -> None:
        """Write each delivery's frame to its targets' sockets here; answer waiting requests."""
        for delivery in deliveries:
            if delivery.request_id is not None:
                waiter = self.pending.pop(delivery.request_id, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result((delivery.status, delivery.frame))
            if delivery.frame == REPLACED:
                for target in delivery.targets:
                    if target.device_id is not None:
                        self.replaced_elsewhere(target.user_id, target.device_id)
                continue
            for target in delivery.targets:
                devices = self.by_user.get(target.user_id)
                if not devices:
                    continue
                if target.device_id is None:
                    for conns in devices.values():
                        for conn in conns:
                            conn.push(delivery.frame)
                else:
                    for conn in devices.get(target.device_id, ()):
                        conn.push(delivery.frame)

    def expect(self, request_id: str) -> asyncio.Future[tuple[int, bytes]]:
        future: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        self.pending[request_id] = future
        return future

    async def wait(self, request_id: str, future: asyncio.Future[tuple[int, bytes]],
                   timeout: float) -> tuple[int, bytes]:
        try:
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError as exc:
            raise Unavailable("the stream workers did not answer in time") from exc
        finally:
            self.pending.pop(request_id, None)

    async def close_all(self) -> None:
        """Close every socket with GOING_AWAY, all at once."""
        conns = [c for devices in self.by_user.values() for cs in devices.values() for c in cs]
        await asyncio.gather(*(c.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
                               for c in conns), return_exceptions=True)
