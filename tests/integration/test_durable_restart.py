"""`make run`'s durability: the stack on its data directory (Kafka's log, Redis's append-only
file, the SQLite timelines) keeps every conversation and message across a restart of the broker,
Redis and the processes, and new messages continue the seq.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
import pytest_asyncio

from infra.services import free_port
from infra.stack import LocalStack
from tests.client import Client
from tests.support import System


@pytest.fixture
def start_stack(tmp_path):
    """Starts the stack on the same directory and ports each time; stops what runs at the end."""
    ports = {"kafka_port": free_port(), "controller_port": free_port(), "redis_port": free_port()}
    started: list[LocalStack] = []

    def start() -> LocalStack:
        started.append(LocalStack(tmp_path / "stack", topics={}, **ports).start())
        return started[-1]

    yield start
    for stack in started:
        stack.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


RESEND_S = 5.0


async def send_until_acked(device, cid: str, names: list[str], timeout: float) -> dict[str, int]:
    """Send each message, and again (same client_msg_id) as a client does: when the server answers
    ``unavailable``, and when no ack came within RESEND_S. Returns client_msg_id -> acked seq.
    A re-send may take a later seq than a message sent after it: seqs are checked as a set, and
    history against the acks."""
    for name in names:
        await device.send_message(cid, name, name.replace("-", " "))
    loop = asyncio.get_running_loop()
    sent_at = {name: loop.time() for name in names}
    answered: set[int] = set()
    deadline = loop.time() + timeout
    while True:
        acks = {a["client_msg_id"]: a["seq"] for a in device.of_type("ack")}
        if all(n in acks for n in names):
            return {n: acks[n] for n in names}
        resend = {n for n in names if n not in acks and loop.time() - sent_at[n] > RESEND_S}
        for error in device.of_type("error"):
            if id(error) not in answered and error.get("code") == "unavailable" and error.get("ref") in names:
                answered.add(id(error))
                resend.add(error["ref"])
        for name in sorted(resend):
            sent_at[name] = loop.time()
            await device.send_message(cid, name, name.replace("-", " "))
        assert loop.time() < deadline, f"not all acked in {timeout}s: {device.frames[-5:]}"
        await asyncio.sleep(0.05)


async def test_messages_and_seq_survive_a_full_restart(start_stack, tmp_path, session):
    stack = start_stack()
    system = System(stack, tmp_path / "system", partitions=2)
    system.start_worker()
    system.start_gateway()
    alice = await Client.sign_in(session, system.url(), "alice")
    cid = (await alice.create_group("durable", []))["conversation_id"]
    device = await alice.device("d1")
    before = await send_until_acked(device, cid, [f"before-{i}" for i in range(3)], timeout=30)
    assert sorted(before.values()) == [1, 2, 3]
    await device.close()

    system.stop()
    stack.stop()
    stack = start_stack()

    system.start_worker()
    gateway = system.start_gateway()
    alice = await Client.sign_in(session, system.url(gateway), "alice")
    device = await alice.device("d2")
    after = await send_until_acked(device, cid, [f"after-{i}" for i in range(2)], timeout=40)
    assert sorted(after.values()) == [4, 5]
    status, page = await alice.call("GET", f"/v1/conversations/{cid}/messages")
    assert status == 200
    acked = sorted((seq, name.replace("-", " ")) for name, seq in {**before, **after}.items())
    assert [(m["seq"], m["body"]) for m in page["messages"]] == acked
    await device.close()
    system.stop()
