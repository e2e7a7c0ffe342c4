"""Faust's aiokafka transport, with a consumer that hands over a record without tasks when it can.

Faust's fetch loop (``Consumer._drain_messages``) hands every record to the conductor with
``await self.wait_first(callback(message), self.suspend_flow.wait())``: ``mode``'s
``wait_first`` wraps the callback, the flow event and the service's stopped and crashed events
in four tasks and an ``asyncio.wait``, then cancels three of them, per record. The callback
(decode the record, put it in its agents' queues) almost never waits: it waits only for a
full queue or suspended flow control.

``Consumer.wait_first`` therefore runs that callback one step first. If it finishes without
waiting, nothing else ran meanwhile, so the result is what ``wait_first`` would have given,
without a task. If it does wait, the callback goes on in a task of its own from where it
stopped, raced against the suspension as before. Every other ``wait_first`` is Faust's.
"""

from __future__ import annotations

import asyncio
import types
from typing import Any, Coroutine

from faust.transport.drivers import aiokafka as driver
from mode.services import WaitResults


@types.coroutine
def _resume(coro: Coroutine[Any, Any, Any], yielded: Any) -> Any:
    """Drive ``coro`` on, as a task would, after it was stepped once and yielded ``yielded``."""
    while True:
        try:
            sent = yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:  # thrown in by the task (cancellation): pass it on
            try:
                yielded = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                yielded = coro.send(sent)
            except StopIteration as stop:
                return stop.value


class Consumer(driver.Consumer):
    async def wait_first(self, *coros: Any, timeout: Any = None) -> WaitResults:
        """``mode``'s ``wait_first``, with the fetch loop's record hand-over run inline when it
        finishes at once (the module's docstring)."""
        if (len(coros) != 2 or timeout is not None or not asyncio.iscoroutine(coros[0])
                or self.suspend_flow.is_set() or self.should_stop):
            return await super().wait_first(*coros, timeout=timeout)
        handover, suspended = coros
        try:
            yielded = handover.send(None)
        except StopIteration as stop:
            if asyncio.iscoroutine(suspended):
                suspended.close()  # never awaited: the hand-over won
            return WaitResults([handover], [stop.value], False)
        except BaseException:
            if asyncio.iscoroutine(suspended):
                suspended.close()
            raise
        task = asyncio.ensure_future(_resume(handover, yielded), loop=self.loop)
        return await super().wait_first(task, suspended)


class Transport(driver.Transport):
    Consumer = Consumer
