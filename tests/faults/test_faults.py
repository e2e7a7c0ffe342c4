"""The fault suite: senders and receivers running, a part of the system dies or stalls, and
afterwards every acked message is stored exactly once, gap-free and in order, and every device
holds all of it. Each fault runs on its own broker and Redis, so what it breaks stays here.

Counts per fault are printed (``pytest -s tests/faults``) and appended to the file named by
``CHAT_FAULT_REPORT`` when it is set.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Callable

import pytest

from chat.events import MessageSendRequested, Origin
from infra.stack import LocalStack
from tests.faults.traffic import Counts, Traffic
from tests.support import CommandProducer, System

FAULT_REPORT = os.environ.get("CHAT_FAULT_REPORT")


@pytest.fixture(scope="module")
def fault_stack(tmp_path_factory):
    with LocalStack(tmp_path_factory.mktemp("fault-stack"), topics={}) as stack:
        yield stack


@pytest.fixture
def system(fault_stack, tmp_path):
    system = System(fault_stack, tmp_path)
    system.start_worker()
    system.start_gateway()
    system.start_gateway()
    yield system
    system.stop()


def report(fault: str, counts: Counts) -> None:
    line = counts.line(fault)
    print(line)
    if FAULT_REPORT:
        with open(FAULT_REPORT, "a") as out:
            out.write(line + "\n")


async def under_load(system: System, session, fault: str, act: Callable[[Traffic], object]) -> Counts:
    """Start the traffic, let it run, apply the fault (``act``, in a thread), let it run on,
    then finish and check."""
    traffic = await Traffic.start(session, [system.url(g) for g in system.gateways])
    try:
        await asyncio.sleep(2.0)
        await asyncio.to_thread(act, traffic)
        await asyncio.sleep(2.0)
        counts = await traffic.finish()
    finally:
        await traffic.close()
    report(fault, counts)
    assert (counts.lost, counts.duplicates, counts.gaps, counts.reordered, counts.ack_conflicts) == (0, 0, 0, 0, 0), \
        counts.line(fault)
    assert counts.acked == counts.sent == counts.messages, counts.line(fault)
    assert counts.converged == counts.devices, counts.line(fault)
    return counts


async def test_kill_9_the_stream_worker_mid_load_and_restart_it(system, session):
    def act(traffic: Traffic) -> None:
        (worker,) = system.workers
        os.kill(worker.pid, signal.SIGKILL)
        worker.proc.wait()
        system.workers.remove(worker)
        system.start_worker()

    await under_load(system, session, "kill -9 worker", act)


async def test_kill_9_a_gateway_its_clients_move_to_the_other_and_sync(system, session):
    def act(traffic: Traffic) -> None:
        os.kill(system.gateways[1].pid, signal.SIGKILL)

    counts = await under_load(system, session, "kill -9 gateway", act)
    assert counts.reconnects >= counts.devices // 2  # every user had a device on the killed gateway


async def test_restart_redis(system, session, fault_stack):
    def act(traffic: Traffic) -> None:
        fault_stack.redis.stop()
        fault_stack.redis.start().wait_ready(30)

    await under_load(system, session, "restart Redis", act)


async def test_pause_the_broker_for_10_s(system, session, fault_stack):
    def act(traffic: Traffic) -> None:
        os.kill(fault_stack.kafka.pid, signal.SIGSTOP)
        try:
            time.sleep(10)
        finally:
            os.kill(fault_stack.kafka.pid, signal.SIGCONT)

    await under_load(system, session, "SIGSTOP broker 10 s", act)


async def test_a_command_produced_twice_makes_one_message(system, session):
    producer = CommandProducer(system.settings)

    def act(traffic: Traffic) -> None:
        # What a producer retry after a lost acknowledgement does: the same command again.
        for sender in traffic.senders:
            for frame, _ in list(sender.pending.values()) + [(f, 0) for f in _acked_frames(sender)]:
                command = MessageSendRequested(frame["conversation_id"], sender.device.client.user_id,
                                               frame["client_msg_id"], frame["body"], Origin("elsewhere"))
                producer.send(command)
                producer.send(command)
        producer.flush()

    await under_load(system, session, "command produced twice", act)
    assert producer.delivered >= 2 * 5


def _acked_frames(sender) -> list[dict]:
    return [{"conversation_id": a["conversation_id"], "client_msg_id": cm, "body": f"body of {cm}"}
            for cm, a in list(sender.device.acks.items())[:5]]
