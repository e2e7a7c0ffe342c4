"""This gateway's sockets, and the requests waiting for an answer from the stream workers.

Each connection (``gateway/connection.py``) has an outbound queue, so frames reach a device in
the order the delivery topic holds them and a slow socket delays nobody else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from typing import Any, AsyncIterator, Iterable, Sequence

from aiohttp import WSCloseCode
from redis.exceptions import RedisError

from chat.errors import Unavailable
from chat.events import BatchedDelivery, Delivery
from gateway.connection import CLOSE_REPLACED, CLOSE_RETRY, Connection
from gateway.outbound import Outbound
from projections.connections import ConnectionRegistry
from projections.signals import REPLACED

log = logging.getLogger(__name__)

__all__ = ["CLOSE_RETRY", "Connection", "Registry", "HEARTBEAT_CHUNK"]

HEARTBEAT_CHUNK = 200  # users per step of a heartbeat (connection directory, presence)


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

    def dispatch(self, deliveries: Sequence[Delivery | BatchedDelivery]) -> None:
        """Write each delivery's frame to its targets' sockets here; answer waiting requests.
        (A ``BatchedDelivery`` names whole users and single devices apart; a ``Delivery``, from
        a probe's answer or the signals channel, mixes them in ``targets``.)"""
        for delivery in deliveries:
            if delivery.request_id is not None:
                waiter = self.pending.pop(delivery.request_id, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result((delivery.status, delivery.frame))
            if isinstance(delivery, BatchedDelivery):
                users: Iterable[str] = delivery.users
                devices: Iterable[Any] = delivery.devices
            else:
                users = [t.user_id for t in delivery.targets if t.device_id is None]
                devices = [t for t in delivery.targets if t.device_id is not None]
            frame = delivery.frame
            if frame == REPLACED:
                for target in devices:
                    self.replaced_elsewhere(target.user_id, target.device_id)
                continue
            by_user = self.by_user
            for user_id in users:
                for conns in by_user.get(user_id, {}).values():
                    for conn in conns:
                        conn.push(frame)
            for target in devices:
                for conn in by_user.get(target.user_id, {}).get(target.device_id, ()):
                    conn.push(frame)

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
