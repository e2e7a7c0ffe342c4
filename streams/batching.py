"""Batches of a Faust stream's events that wait for events, not on a clock.

Faust's ``Stream.take_events(max_, within)`` wakes every ``within`` seconds whether or not an
event came: with a 5 ms window, each of the worker's six agents woke 200 times a second, and
every wake-up made tasks and futures (``mode``'s ``wait_first``): 110,000 waits for 1,400
messages in a profile, a fixed cost paid even by an idle worker. ``take_batches`` sleeps until
the first event of a batch arrives, then gathers for at most ``within`` (less once ``max_``
events are in, or once a millisecond passes with no new one), yields them, and acks them
after the consumer's loop body has run to its end: batches as ``take_events`` makes them under
load, at-least-once acking (a batch whose body failed is never acked), without the idle
wake-ups.

It uses the stream's buffering hooks as ``take_events`` does (a processor that fills the
buffer while the stream is consumed passively; acks off while events are buffered), checked
against faust-streaming 0.15.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

from mode.utils.aiter import aiter
from mode.utils.futures import notify


QUIET_S = 0.001  # a batch closes once this long passes with no new event (or the window ends)


async def _gather(stream: Any, events: list[Any], full: asyncio.Event, within: float) -> None:
    """Let a batch grow until it is full, ``within`` has passed since its first event, or
    ``QUIET_S`` passed without a new one: under load batches fill for the whole window; a
    lone message waits about a millisecond, not the window."""
    deadline = stream.loop.time() + within
    seen = len(events)
    while not full.is_set():
        remaining = deadline - stream.loop.time()
        if remaining <= 0:
            return
        await stream.wait_for_stopped(full, timeout=min(QUIET_S, remaining))
        if len(events) == seen:
            return
        seen = len(events)


async def take_batches(stream: Any, max_: int, within: float) -> AsyncIterator[list[Any]]:
    """Lists of up to ``max_`` events: each starts with the first event after the last one and
    closes ``within`` seconds later or when full. A batch's events are acked once the next batch
    is asked for, after the ``async for`` body ran to its end; never when the body raised, was
    cancelled or broke out of the loop. (Faust's ``take_events`` acks in a ``finally``: a batch
    whose agent crashed was then committed by the stopping worker, and the projections of 17
    acked messages were lost when a worker's projector crashed in ``make test-cluster``.)"""
    events: list[Any] = []
    arrived = asyncio.Event()  # the batch has its first event
    full = asyncio.Event()
    consumed = asyncio.Event()
    consuming: asyncio.Future[None] | None = None  # set while a batch is handed out
    enable_acks = stream.enable_acks

    async def add(value: Any) -> Any:
        nonlocal consuming
        if consuming is not None:  # a batch is out: wait until it is done with
            try:
                await consuming
            finally:
                consuming = None
        event = stream.current_event
        if event is None:
            raise RuntimeError("take_batches found no current event")
        events.append(event)
        arrived.set()
        if len(events) >= max_:
            full.set()
            consumed.clear()
            await stream.wait(consumed)  # never more than max_ in one batch
        return value

    stream.enable_acks = False
    stream.add_processor(add)
    stream._enable_passive(aiter(stream.channel))
    try:
        while not stream.should_stop:
            if await stream.wait_for_stopped(arrived):
                break
            await _gather(stream, events, full, within)
            if not events:
                continue
            consuming = stream.loop.create_future()
            try:
                yield list(events)
                # Resumed: the loop body ran to its end. A body that raised or was cancelled
                # closes the generator here instead, and its batch stays unacked, so the
                # offsets committed (on stopping, or by the next owner) never pass it.
                for event in events:
                    await stream.ack(event)
            finally:
                events.clear()
                arrived.clear()
                full.clear()
                notify(consuming)
                consumed.set()
    finally:
        stream.enable_acks = enable_acks
        stream._processors.remove(add)
