"""`make run`'s durability: Tansu on its s3 engine over s3rver keeps every conversation and
message across a restart of the broker and the processes, and new messages continue the seq.

Also guards the design-around in ``infra.topics.warm_partitions``: without it, Tansu gives
the first record produced after a restart an offset already taken (LOCAL-STACK.md, s3 engine).
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import aiohttp
import pytest
import pytest_asyncio

from infra.services import Redis, S3rver, Tansu, free_port
from infra.topics import warm_partitions
from tests.client import Client
from tests.support import System


@pytest.fixture
def durable(tmp_path):
    s3 = S3rver(free_port(), tmp_path / "s3", log_path=tmp_path / "logs" / "s3rver.log")
    redis = Redis(free_port(), tmp_path / "redis", log_path=tmp_path / "logs" / "redis.log")
    port = free_port()

    def broker() -> Tansu:
        tansu = Tansu(port, storage="s3", s3_endpoint=s3.endpoint, log_path=tmp_path / "logs" / "tansu.log")
        tansu.start()
        tansu.wait_ready()
        return tansu

    s3.start(), s3.wait_ready(), redis.start(), redis.wait_ready()
    env = SimpleNamespace(broker=broker, tansu=broker(), bootstrap=f"127.0.0.1:{port}", redis_url=redis.url)
    yield env
    env.tansu.stop()
    redis.stop()
    s3.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


RESEND_S = 5.0


async def send_until_acked(device, cid: str, names: list[str], timeout: float) -> dict[str, int]:
    """Send each message, and again (same client_msg_id) as a client does: when the server answers
    ``unavailable``, and when no ack came within RESEND_S. Returns client_msg_id -> acked seq.

    Tansu's s3 engine has put the gateway's idempotent producer out of step: a record refused
    ("out of order sequence number", answered ``unavailable``), and once one before it acked by
    the broker but never seen by the worker, so neither ack nor error came back. A re-send may
    then take a later seq than a message sent after it: seqs are checked as a set, and history
    against the acks."""
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


async def test_messages_and_seq_survive_a_full_restart(durable, tmp_path, session):
    system = System(durable, tmp_path / "system", partitions=2)
    system.start_worker()
    system.start_gateway()
    alice = await Client.sign_in(session, system.url(), "alice")
    cid = (await alice.create_group("durable", []))["conversation_id"]
    device = await alice.device("d1")
    before = await send_until_acked(device, cid, [f"before-{i}" for i in range(3)], timeout=30)
    assert sorted(before.values()) == [1, 2, 3]
    await device.close()

    system.stop()
    durable.tansu.stop()
    durable.tansu = durable.broker()
    warmed = warm_partitions(durable.bootstrap)
    assert warmed[system.settings.events_topic] >= 4  # a fence, the creation, three messages

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
