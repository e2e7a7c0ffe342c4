"""The Faust agents: the sequencer (commands -> events) and the projector (events ->
timeline, conversation projection, per-gateway delivery). Bodies stay short: decode,
call the pure model or a projection, publish, and wait until what was published is
durable before the batch's offsets can be committed.

Faust consumes (groups, assignment, commits); records are produced with confluent-kafka
(``chat.kafka``), librdkafka's idempotent producer, the one the gateways use too: one
producer to reason about (ordering per partition, fatal-error renewal), and a write to the
per-gateway delivery topics that never waits on Faust's topic declarations.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from chat.events import PipelineProbe
from chat.ids import new_message_id
from chat.loop_watch import LoopWatch
from chat.sealing import MessageKey
from projections.message_keys import open_batch, seal_batch
from projections.timeline_projection import TimelineOutcome, project_search, project_timeline
from streams.batching import take_batches
from streams import metrics
from streams import partition_tasks
from streams.app import app, settings
from streams.model import Sequencer
from streams.recovery import new_fence, recover
from streams.resources import Resources
from streams.snapshot_writer import SnapshotWriter
from streams.retry import Stopping, survives, together, until_written
from streams.topics import commands_topic, events_topic

log = logging.getLogger(__name__)

BATCH = 500
WITHIN_S = settings.batch_window_ms / 1000  # how long a batch gathers before it is handled

# One recovery per assigned commands partition, started at assignment and run concurrently;
# the sequencer waits only for the partition of the command at hand.
recoveries: dict[int, asyncio.Task[Sequencer]] = {}
projecting: set[int] = set()  # events partitions assigned to this worker
resources = Resources(settings)
snapshots = SnapshotWriter(settings)


async def _recover(partition: int) -> Sequencer:
    """Fence the events partition and take its snapshots, then rebuild its state from the last
    snapshots and the log after them, up to the fence."""
    res = await resources.ready()
    started = time.monotonic()
    offset = await res.publish(settings.events_topic, new_fence(partition, settings.worker_id), partition)
    store = await snapshots.take(partition, offset)
    log.info("partition %d fenced at events offset %d, snapshots taken, in %.2fs", partition, offset,
             time.monotonic() - started)
    sequencer = await recover(settings, partition, offset, store)
    asyncio.ensure_future(announce())
    return sequencer


async def announce() -> None:
    """Tell gateways which partitions this worker serves now (see projections/workers.py)."""
    res = await resources.ready()
    recovered = [p for p, t in recoveries.items() if partition_tasks.succeeded(t)]
    await res.workers.announce(settings.worker_id, recovered, projecting)


@app.timer(interval=settings.heartbeat_interval_s)
@survives("worker heartbeat")
async def heartbeat() -> None:
    await announce()


@app.task
async def watch_loop() -> None:
    """How late this worker's loop runs, and what holds it when it stalls (chat/loop_watch.py)."""
    await LoopWatch(metrics.loop_lag, settings.loop_stall_ms / 1000).run()


def start_recovery(partition: int) -> asyncio.Task[Sequencer]:
    return partition_tasks.ensure(recoveries, partition, _recover)


async def sequencer_for(partition: int) -> Sequencer | None:
    """This worker's sequencer for a partition, rebuilt from the log when first needed; None
    when the partition is not this worker's (revoked before or while it was rebuilt)."""
    return await partition_tasks.owned(recoveries, partition, _recover)


def recovered() -> dict[int, Sequencer]:
    return {p: t.result() for p, t in recoveries.items() if partition_tasks.succeeded(t)}


@app.timer(interval=settings.snapshot_interval_s)
@survives("sequencer snapshots")
async def snapshot() -> None:
    """A round of snapshots (streams/snapshot_writer.py), and now and then the idle conversations frozen."""
    with metrics.step("snapshot", "round"):
        await snapshots.round(recovered)
    await snapshots.sweep(recovered)


@app.agent(commands_topic)
async def sequence(stream: Any) -> None:
    res = await resources.ready()
    async for batch in take_batches(stream, BATCH, WITHIN_S):
        snapshots.quiet.clear()  # until every event of the batch is durable (or its sequencer gone)
        try:
            await sequence_batch(res, batch)
        finally:
            snapshots.quiet.set()


async def sequence_batch(res: Resources, batch: list[Any]) -> None:
    """Decide a batch's commands, publish the events, and wait until they are durable."""
    pending: list[asyncio.Future[Any]] = []
    sequencers: dict[int, Sequencer] = {}
    outs: list[tuple[Any, int]] = []  # (event, partition) in the order decided
    keys: list[MessageKey] = []
    metrics.events.labels("sequence").inc(len(batch))
    metrics.batch_size.labels("sequence").observe(len(batch))
    revoked: set[int] = set()  # partitions taken from this worker while their sequencers were rebuilt
    with metrics.step("sequence", "handle"):
        for event in batch:
            partition = event.message.partition
            if partition in revoked:
                continue
            sequencer = await sequencer_for(partition)
            if sequencer is None:  # its commands are the new owner's (their acks are not committed here)
                revoked.add(partition)
                continue
            sequencers[partition] = sequencer
            command = event.value.event
            if isinstance(command, PipelineProbe):  # answered once this partition's state is recovered
                pending.append(asyncio.ensure_future(res.answer_probe(command)))
                continue
            now_ms = int(time.time() * 1000)
            sealed, new_keys = seal_batch(sequencer.handle(command, now_ms=now_ms, new_id=new_message_id),
                                          sequencer.expires_at)
            outs += [(out, partition) for out in sealed]
            keys += new_keys
    with metrics.step("sequence", "durable"):
        # A body's key is stored before its event is published: an event in the log can
        # always be opened until its message is deleted or expires.
        with metrics.step("sequence", "keys"):
            failed = await _failures(res.keys.put(keys)) if keys else []
        published = [] if failed else [res.publish(settings.events_topic, out, partition) for out, partition in outs]
        results = await asyncio.gather(*published, *pending, return_exceptions=True)
        failed += [r for r in results if isinstance(r, Exception)]
    if not failed:
        for (_, partition), offset in zip(outs, results):  # the offset each state now includes
            sequencers[partition].offset = max(sequencers[partition].offset, offset)
    if failed:
        # The producer lost records (a fatal error replaced it): this batch's sequencers have
        # assigned seqs that may never reach the log, and the next events would leave a gap.
        # They are rebuilt from the log instead; the commands were never answered, and their
        # clients send them again (deduplicated by client_msg_id if their events did land).
        partitions = sorted({e.message.partition for e in batch})
        log.error("storing keys or publishing %d events failed (%s); rebuilding the sequencers of partitions %s from the log",
                  len(failed), failed[0], partitions)
        for partition in partitions:
            partition_tasks.forget(recoveries, partition)
            start_recovery(partition)


async def _failures(write: Any) -> list[Exception]:
    try:
        await write
    except Exception as exc:
        return [exc]
    return []


@app.agent(events_topic)
async def project(stream: Any) -> None:
    res = await resources.ready()
    async for batch in take_batches(stream, BATCH, WITHIN_S):
        events = [e.value.event for e in batch]
        metrics.events.labels("project").inc(len(events))
        metrics.batch_size.labels("project").observe(len(events))
        await until_written(lambda: project_batch(res, events), "projecting events")


async def project_batch(res: Resources, events: list[Any]) -> None:
    """Write every projection of a batch, then deliver it: an ack reaches the client only once
    history, the conversation list, the receipts and the media's whereabouts have the message.
    The writes are independent of each other and run concurrently (they were one round trip
    after another); the routing reads the conversation as its projection holds it after the batch.

    (Overlapping a batch's writes with the previous batch's wait for durable deliveries, acking
    by hand with ``noack_take``, was tried and measured slower: 359 of 400 msg/s accepted, p50
    1.2 s, against 395 and 258 ms. Tried again on Apache Kafka, a batch's acks held by its
    delivery's future: slower again at 300 msg/s, p50 169 and 315 ms against 136 and 161, p99
    889 and 1,239 against 371 and 457 (``bench.stages``, two runs each): the deliveries then in
    flight beside the sequencer's events lengthened its durable wait, 19-23 to 25-35 ms, and the
    sequencer is the path every message takes.)"""

    with metrics.step("project", "open"):
        events = await open_batch(res.keys, events)

    async def timelines() -> TimelineOutcome:
        with metrics.timed("timelines"):
            return await project_timeline(res.timelines, events)

    async def conversations() -> None:
        with metrics.timed("conversations"):
            await res.conversations.apply(events)

    async def receipts() -> None:
        with metrics.timed("receipts"):
            await res.receipts.apply(events)

    with metrics.step("project", "write"):
        outcome, *_ = await together(timelines(), conversations(), receipts(), res.media.apply(events),
                                     res.social.apply(events), project_search(res.search, events))
        # A deleted message's media leaves the object store (unless another message uses it),
        # and its keys are destroyed: its bodies in the log can never be opened again.
        await together(res.erase_media(events), res.destroy_keys(events))
    with metrics.step("project", "route"):
        routed, seen = await res.router.route_seen(events, outcome)
    # Blocks and mutes: their answers, and what a block does to presence (projections/social.py).
    routed = routed + await res.social_router.route(events, int(time.time() * 1000))
    # Devices with no live connection get push notifications.
    with metrics.step("project", "deliver"):
        await together(res.deliver(routed), res.push_offline(events, seen))
    metrics.batch_size.labels("deliveries").observe(len(routed))


@app.on_partitions_revoked.connect
async def on_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
    for tp in revoked:
        if tp.topic == settings.commands_topic:
            partition_tasks.forget(recoveries, tp.partition)
            await snapshots.release(tp.partition)
        if tp.topic == settings.events_topic:
            projecting.discard(tp.partition)
    resources.router.forget()
    await announce()
    log.info("partitions revoked: %s", sorted((tp.topic, tp.partition) for tp in revoked))


@app.on_partitions_assigned.connect
async def on_assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
    log.info("partitions assigned: %s", sorted((tp.topic, tp.partition) for tp in assigned))
    for tp in assigned:
        if tp.topic == settings.commands_topic:
            start_recovery(tp.partition)
        if tp.topic == settings.events_topic:
            projecting.add(tp.partition)
    await announce()


@app.on_before_shutdown.connect
async def on_shutdown(sender: Any, **kwargs: Any) -> None:
    """After the consumers stop: flush what was produced, leave the registry, close stores."""
    Stopping.is_set = True
    await snapshots.close()
    await resources.close()
