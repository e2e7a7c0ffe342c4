"""The presence agents, partitioned by user id.

``presence`` is the single writer of its partitions' presence: it applies the gateways'
signals (connect, disconnect, heartbeat) to the pure ``PresenceBook``, publishes the
``PresenceChanged`` events it decides on the presence topic (same partition number), and
renews the online users' leases in the projection. A timer applies the clock (debounce, TTL).
``project_presence`` projects the presence topic into Redis and sends ``presence`` frames to
the devices of everyone who shares a conversation with the user, once per change.

A worker that takes a partition over starts from the projection's watch list of that
partition (``PresenceProjection.watched``), not from nothing: users whose gateway died while
no worker watched still go offline, and nobody online gets a second ``online``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Sequence

from chat.events import PresenceChanged
from streams.batching import take_batches
from streams import metrics
from streams.agents import resources
from streams import partition_tasks
from streams.app import app, settings
from streams.presence_model import ONLINE, PresenceBook, recovered
from streams.resources import Resources
from streams.retry import survives, until_written
from streams.topics import presence_signals_topic, presence_topic

log = logging.getLogger(__name__)

BATCH = 200  # a gateway's heartbeat brings a signal per user: smaller batches let messages in between
WITHIN_S = 0.005
TICK_S = 0.5
# A taken-over user stays online this long past the next gateway heartbeat at most, unless a
# gateway's heartbeat says more: every live gateway heartbeats within heartbeat_interval_s.
TAKEOVER_MARGIN_MS = 5_000

books: dict[int, asyncio.Task[PresenceBook]] = {}


def _now_ms() -> int:
    return int(time.time() * 1000)


async def _load(partition: int) -> PresenceBook:
    res = await resources.ready()
    book = PresenceBook(int(settings.presence_ttl * 1000), int(settings.presence_debounce_s * 1000))
    until = _now_ms() + int(settings.heartbeat_interval_s * 1000) + TAKEOVER_MARGIN_MS
    for user_id, (expiry, last_seen) in (await res.presence.watched(partition)).items():
        book.put(user_id, recovered(last_seen, min(expiry, until)))
    log.info("presence partition %d: watching %d online users", partition, len(book.users))
    return book


def book_for(partition: int) -> asyncio.Task[PresenceBook]:
    return partition_tasks.ensure(books, partition, _load)


def _publish(res: Resources, partition: int, changes: Sequence[PresenceChanged]) -> Awaitable[Any]:
    """Produce the decided changes now, in the order decided (so a timer tick and a batch never
    swap them); the result is done once they are durable and offline users' leases are gone."""
    produced = [res.publish(settings.presence_topic, c, partition) for c in changes]
    offline = [c.user_id for c in changes if c.status != ONLINE]
    return asyncio.gather(*produced, until_written(lambda: res.presence.release(partition, offline),
                                                   "releasing presence leases"))


@app.agent(presence_signals_topic)
async def presence(stream: Any) -> None:
    res = await resources.ready()
    async for batch in take_batches(stream, BATCH, WITHIN_S):
        metrics.events.labels("presence").inc(len(batch))
        now = _now_ms()
        pending: list[Awaitable[Any]] = []
        leases: dict[int, dict[str, int]] = {}
        revoked: set[int] = set()  # partitions taken from this worker while their books loaded
        for event in batch:
            partition, signal = event.message.partition, event.value.event
            if partition in revoked:
                continue
            book = await until_written(lambda: partition_tasks.owned(books, partition, _load), "loading presence")
            if book is None:  # revoked: its signals are the new owner's
                revoked.add(partition)
                continue
            changes = book.signal(signal, now)
            if changes:
                pending.append(_publish(res, partition, changes))
            if book.online(signal.user_id):
                leases.setdefault(partition, {})[signal.user_id] = book.users[signal.user_id].last_seen
        await asyncio.gather(*pending, until_written(lambda: _lease(res, leases, now), "renewing presence leases"))


async def _lease(res: Resources, leases: dict[int, dict[str, int]], now: int) -> None:
    await asyncio.gather(*(res.presence.lease(p, users, now) for p, users in leases.items()))


@app.timer(interval=TICK_S)
@survives("presence clock")
async def presence_clock() -> None:
    res = await resources.ready()
    now = _now_ms()
    for partition, task in list(books.items()):
        if partition_tasks.succeeded(task):
            changes = task.result().tick(now)
            if changes:
                await _publish(res, partition, changes)


@app.agent(presence_topic)
async def project_presence(stream: Any) -> None:
    res = await resources.ready()
    async for batch in take_batches(stream, BATCH, WITHIN_S):
        # Frames only for what changed the projection: a change projected again after a crash
        # (at-least-once) is not announced twice.
        events = [e.value.event for e in batch]
        metrics.events.labels("project_presence").inc(len(events))
        with metrics.timed("presence"):
            changed = await until_written(lambda: res.presence.apply(events), "projecting presence")
        await until_written(lambda: _announce(res, changed), "sending presence frames")


async def _announce(res: Resources, changed: list[PresenceChanged]) -> None:
    await res.deliver(await res.presence_router.route(changed))


@app.on_partitions_revoked.connect
async def on_presence_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
    for tp in revoked:
        if tp.topic == settings.presence_signals_topic:
            partition_tasks.forget(books, tp.partition)


@app.on_partitions_assigned.connect
async def on_presence_assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
    for tp in assigned:
        if tp.topic == settings.presence_signals_topic:
            book_for(tp.partition)
