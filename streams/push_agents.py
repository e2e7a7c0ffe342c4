"""The push agent: sends each ``PushRequested`` of the push topic through its provider
(``push/sender.py``: once per message and device, retries off the pipeline, dead letters), and
a timer that puts due retries back on the push topic. The projector plans the jobs
(``Resources.push_offline``), so a slow or failing provider never holds messages back."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any

from chat.events import PushRequested
from push.providers import providers_for
from push.sender import PushSender
from streams.batching import take_batches
from streams.agents import resources
from streams.app import app, settings
from streams.retry import survives, until_written
from streams.topics import push_topic

log = logging.getLogger(__name__)

BATCH = 100
WITHIN_S = 0.01
RETRY_TICK_S = 0.25

_sender: PushSender | None = None


async def push_sender() -> PushSender:
    global _sender
    res = await resources.ready()
    if _sender is None:
        _sender = PushSender(settings, res.redis, providers_for(settings),
                             lambda topic, event: res.publish_keyed(topic, event), res.timelines)
    return _sender


@app.agent(push_topic)
async def push(stream: Any) -> None:
    sender = await push_sender()
    async for batch in take_batches(stream, BATCH, WITHIN_S):
        jobs = [e.value.event for e in batch if isinstance(e.value.event, PushRequested)]
        # handle() turns provider failures into retries and dead letters; Redis away is retried
        # here (a job already sent is then a "duplicate", by its marker).
        outcomes = await until_written(lambda: asyncio.gather(*(sender.handle(job) for job in jobs)),
                                       "sending pushes")
        log.debug("push batch: %s", Counter(outcomes))


@app.timer(interval=RETRY_TICK_S)
@survives("requeueing push retries")
async def requeue_due_pushes() -> None:
    sender = await push_sender()
    res = await resources.ready()
    jobs = await sender.retries.due(int(time.time() * 1000))
    if not jobs:
        return
    try:
        await asyncio.gather(*(res.publish_keyed(settings.push_topic, job) for job in jobs))
    except Exception:  # the broker refused: due again in a second
        log.exception("could not requeue %d push retries", len(jobs))
        for job in jobs:
            await sender.retries.schedule(job, int(time.time() * 1000) + 1000)


@app.on_before_shutdown.connect
async def close_sender(sender: Any, **kwargs: Any) -> None:
    if _sender is not None:
        await _sender.close()
