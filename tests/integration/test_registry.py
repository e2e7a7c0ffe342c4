"""The gateway's socket registry on a real Redis directory: bookkeeping that must hold when
several devices of one user come and go at once."""

from __future__ import annotations

import asyncio
import uuid

import pytest_asyncio
import redis.asyncio as redis

from chat.events import BatchedDelivery, Delivery, DeviceTarget, Target
from gateway.connection import Connection
from gateway.registry import Registry
from projections.connections import ConnectionRegistry


class FakeSocket:
    closed = False

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send_frame(self, frame: bytes, _opcode: object) -> None:
        self.sent.append(frame)


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
