"""The worker consumer's record hand-over (streams/transport.py) on Faust's own Consumer:
inline when the callback finishes at once, a task from where it stopped when it waits, and
dropped when the flow is suspended first, as ``mode``'s ``wait_first`` does."""

from __future__ import annotations

import asyncio

import faust
import pytest

from streams.transport import Consumer, Transport

pytestmark = pytest.mark.asyncio


class _App(faust.App):
    def _new_transport(self):
        return Transport(self.conf.broker_consumer, self)


@pytest.fixture
async def consumer():
    # Made on the test's loop; never started: no broker is contacted, only the hand-over runs.
    app = _App("transport-test", broker="kafka://127.0.0.1:9", web_enabled=False)
    c = app.consumer
    assert isinstance(c, Consumer) and c.loop is asyncio.get_running_loop()
    return c


async def test_a_handover_that_finishes_at_once_runs_inline(consumer):
    async def handover():
        return 42

    suspended = asyncio.Event()
    before = len(asyncio.all_tasks())
    coro = handover()
    result = await consumer.wait_first(coro, suspended.wait())
    assert result.results == [42] and not result.stopped
    assert result.done == [coro]  # the coroutine itself: no task was made for it
    assert len(asyncio.all_tasks()) == before


async def test_a_handover_that_waits_goes_on_in_a_task(consumer):
    room = asyncio.get_running_loop().create_future()  # a full queue making room
    steps = []

    async def handover():
        steps.append("started")
        value = await room
        steps.append("resumed")
        return value + 1

    waiting = asyncio.ensure_future(consumer.wait_first(handover(), asyncio.Event().wait()))
    await asyncio.sleep(0.01)
    assert steps == ["started"] and not waiting.done()
    room.set_result(1)
    result = await asyncio.wait_for(waiting, 2)
    assert steps == ["started", "resumed"]
    assert result.results == [2] and not result.stopped


async def test_a_waiting_handover_is_cancelled_when_the_flow_is_suspended(consumer):
    never = asyncio.get_running_loop().create_future()
    cancelled = asyncio.Event()

    async def handover():
        try:
            await never
        except asyncio.CancelledError:
            cancelled.set()
            raise

    suspended = asyncio.Event()
    waiting = asyncio.ensure_future(consumer.wait_first(handover(), suspended.wait()))
    await asyncio.sleep(0.01)
    suspended.set()
    result = await asyncio.wait_for(waiting, 2)
    assert result.results == [True]  # the suspension won
    await asyncio.wait_for(cancelled.wait(), 2)


async def test_an_error_in_the_handover_reaches_the_fetch_loop(consumer):
    async def handover():
        raise ValueError("bad record")

    with pytest.raises(ValueError, match="bad record"):
        await consumer.wait_first(handover(), asyncio.Event().wait())
