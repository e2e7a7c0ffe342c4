"""The gateway's socket registry on a real Redis directory: bookkeeping that must hold when
several devices of one user come and go at once."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import pytest_asyncio
import redis.asyncio as redis

from chat import keys
from chat.events import BatchedDelivery, Delivery, DeviceTarget, Target
from gateway.connection import Connection
from gateway.registry import Registry
from projections.connections import ConnectionRegistry


class FakeSocket:
    closed = False

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.close_code: int | None = None

    async def send_frame(self, frame: bytes, _opcode: object) -> None:
        self.sent.append(frame)

    async def close(self, *, code: int, message: bytes = b"", drain: bool = True) -> None:
        self.closed, self.close_code = True, code


@pytest_asyncio.fixture(loop_scope="session")
async def directory(stack):
    client = redis.Redis.from_url(stack.redis_url)
    yield ConnectionRegistry(client, ttl_s=60)
    await client.aclose()


async def test_devices_of_one_user_closing_together(directory):
    user = f"alice-{uuid.uuid4().hex[:6]}"
    registry = Registry("gw", directory)
    conns = [Connection(FakeSocket(), user, f"d{i}") for i in range(5)]
    for c in conns:
        await registry.add(c)
    assert len(registry) == 5
    assert (await directory.gateways([user]))[user] == {f"d{i}": "gw" for i in range(5)}
    await asyncio.gather(*(registry.remove(c) for c in conns))
    assert len(registry) == 0 and user not in registry.by_user
    assert (await directory.gateways([user]))[user] == {}


async def test_dispatch_reaches_every_device_or_just_the_one_named(directory):
    registry = Registry("gw", directory)
    phone, laptop = Connection(FakeSocket(), "bob", "phone"), Connection(FakeSocket(), "bob", "laptop")
    for c in (phone, laptop):
        await registry.add(c)
    registry.dispatch([Delivery([Target("bob")], b"all"), Delivery([Target("bob", "phone")], b"one"),
                       Delivery([Target("nobody")], b"lost")])
    await asyncio.sleep(0.01)
    assert phone.ws.sent == [b"all", b"one"] and laptop.ws.sent == [b"all"]
    for c in (phone, laptop):
        await registry.remove(c)


async def test_batched_deliveries_reach_whole_users_and_single_devices_in_order(directory):
    registry = Registry("gw", directory)
    phone, laptop = Connection(FakeSocket(), "bob", "phone"), Connection(FakeSocket(), "bob", "laptop")
    carol = Connection(FakeSocket(), "carol", "tab")
    for c in (phone, laptop, carol):
        await registry.add(c)
    registry.dispatch([BatchedDelivery(["bob", "carol", "nobody"], [], b"1"),
                       BatchedDelivery([], [DeviceTarget("bob", "laptop")], b"2", "r9", 202),
                       BatchedDelivery(["carol"], [DeviceTarget("bob", "phone")], b"3")])
    await asyncio.sleep(0.01)
    assert (phone.ws.sent, laptop.ws.sent, carol.ws.sent) == ([b"1", b"3"], [b"1", b"2"], [b"1", b"3"])
    for c in (phone, laptop, carol):
        await registry.remove(c)


async def test_a_waiting_request_gets_its_answer(directory):
    registry = Registry("gw", directory)
    waiter = registry.expect("r1")
    registry.dispatch([Delivery([], b'{"type":"ack"}', "r1", 202)])
    assert await registry.wait("r1", waiter, 1.0) == (202, b'{"type":"ack"}')
    assert registry.pending == {}


async def test_a_gateway_leaving_never_removes_the_entry_a_newer_gateway_wrote(directory):
    """A device moved: its old gateway unregisters it while the new one registers it. The new
    entry stays, whatever the interleaving (a read then a delete removed it when the write
    landed between them: the device then got no live frames until the next heartbeat)."""
    users = [f"mover-{uuid.uuid4().hex[:6]}" for _ in range(20)]
    await directory.register([(u, "phone") for u in users], "gw-old")
    await asyncio.gather(*(step for u in users for step in (
        directory.unregister(u, "phone", "gw-old"), directory.register([(u, "phone")], "gw-new"))))
    assert await directory.gateways(users) == {u: {"phone": "gw-new"} for u in users}
    await asyncio.gather(*(directory.unregister(u, "phone", "gw-new") for u in users))
    assert await directory.gateways(users) == {u: {} for u in users}


async def test_a_socket_the_directory_could_not_take_is_not_kept():
    """Redis refused the registration: the socket is not kept here either, so no heartbeat
    enters it later for a device that has reconnected elsewhere meanwhile."""
    from infra.services import free_port

    client = redis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    registry = Registry("gw", ConnectionRegistry(client, ttl_s=60))
    try:
        with pytest.raises(redis.ConnectionError):
            await registry.add(Connection(FakeSocket(), "carol", "phone"))
        assert len(registry) == 0 and registry.devices("carol") == []
    finally:
        await client.aclose()


async def test_a_heartbeat_closes_a_socket_whose_entry_was_lost_or_taken_and_never_writes_it_back(directory):
    """Between heartbeats a device's entry was lost (a write a Redis failover dropped) or taken
    by another gateway's late registration: live frames went elsewhere, so the socket is closed
    with 1013 (the device reconnects and syncs) and the other gateway's entry is left alone."""
    from gateway.registry import CLOSE_RETRY

    users = [f"hb-{uuid.uuid4().hex[:6]}" for _ in range(3)]
    registry = Registry("gw", directory)
    conns = [Connection(FakeSocket(), u, "phone") for u in users]
    for c in conns:
        await registry.add(c)
    kept, lost, taken = conns
    await directory.redis.hdel(keys.connections(lost.user_id), "phone")
    await directory.register([(taken.user_id, "phone")], "gw-late")
    await registry.refresh()
    await asyncio.sleep(0.05)  # the close is a task
    assert (kept.closed, lost.closed, taken.closed) == (False, True, True)
    assert (lost.ws.close_code, taken.ws.close_code) == (CLOSE_RETRY, CLOSE_RETRY)
    assert await directory.gateways(users) == {kept.user_id: {"phone": "gw"}, lost.user_id: {},
                                               taken.user_id: {"phone": "gw-late"}}
    for c in conns:
        await registry.remove(c)



class HeldGoodbye(ConnectionRegistry):
    """The real directory, whose unregistrations wait for ``go`` (as behind a Redis failover)."""

    def __init__(self, client: redis.Redis) -> None:
        super().__init__(client, ttl_s=60)
        self.go = asyncio.Event()

    async def unregister(self, user_id: str, device_id: str, gateway_id: str) -> None:
        await self.go.wait()
        await super().unregister(user_id, device_id, gateway_id)


async def test_a_device_reconnecting_here_keeps_its_entry_while_its_old_socket_says_goodbye(directory):
    """The old socket's goodbye and the new socket's registration name the same gateway, so
    only their order keeps the entry: a goodbye held up (a Redis failover) used to land after
    the new socket's registration and delete its entry."""
    held = HeldGoodbye(directory.redis)
    registry, user = Registry("gw", held), f"back-{uuid.uuid4().hex[:6]}"
    old, new = Connection(FakeSocket(), user, "phone"), Connection(FakeSocket(), user, "phone")
    await registry.add(old)
    goodbye = asyncio.create_task(registry.remove(old))
    await asyncio.sleep(0)  # the old socket is gone here; its unregistration waits
    hello = asyncio.create_task(registry.add(new))
    await asyncio.sleep(0.2)
    held.go.set()
    await asyncio.gather(goodbye, hello)
    assert await held.gateways([user]) == {user: {"phone": "gw"}} and new.registered
    assert registry.locks._locks == {}  # none kept once released
    await registry.remove(new)
