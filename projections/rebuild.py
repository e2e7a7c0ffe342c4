"""Rebuilding projections from the event log: a small registry and one driver.

Each projection registers how to rebuild it (``ProjectionSpec``): the topic it is built from,
the event types it applies, and a ``RebuildTarget`` that writes a fresh copy beside the live one
and switches to it. ``rebuild`` then, per topic:

1. writes a marker (a ``PartitionFenced`` record, which every consumer already ignores) to each
   partition and waits until it is durable: the acked offsets are where this rebuild's log ends,
   exact on a topic still being written (a high watermark read first could be passed by the
   time the copy switches in);
2. replays each partition from its first record to its marker into the fresh copies, in log
   order, while the live projections keep serving and the live projector keeps writing;
3. switches each copy in (see the targets' modules);
4. writes a second marker and applies what came between the two markers to the live
   projections (a catch-up: projections are idempotent), so nothing written during the rebuild
   is lost whatever the live projector did meanwhile.

A dry run writes nothing, not even markers: it reads the log up to its high watermarks
(``chat.logread``) and counts what each projection would apply.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from chat.codec import default_codec
from chat.errors import NotFound, SchemaError
from chat.events import (
    ConversationCreated, ConversationUpdated, Event, MemberRemoved, MembersAdded, MessageAccepted, MessageDeleted,
    MessageEdited, PartitionFenced, PresenceChanged, ReactionChanged, ReceiptRecorded,
)
from chat.events import BlockChanged, MuteChanged, ProfileUpdated
from chat.kafka import AsyncProducer
from chat.logread import BEGINNING, TopicReader
from chat.secure import kafka_security, redis_options
from chat.settings import Settings
from projections.message_keys import MessageKeyStore, make_message_key_store, open_batch

log = logging.getLogger(__name__)


class RebuildTarget(Protocol):
    name: str

    async def open(self) -> None: """Prepare an empty fresh copy."""
    async def apply(self, events: Sequence[Event]) -> None: """Apply events, in log order, to the copy."""
    async def switch(self) -> int: """Make the copy the live projection; returns its rows or keys."""
    async def apply_live(self, events: Sequence[Event]) -> None: """Apply events to the live projection."""
    async def size(self) -> int: """Rows or keys of the live projection."""
    async def close(self) -> None: """Release connections and drop what is left of the copy."""


@dataclass(frozen=True)
class ProjectionSpec:
    name: str
    topic: Callable[[Settings], str]
    handles: tuple[type[Event], ...]
    target: Callable[[Settings, int], RebuildTarget]  # (settings, scratch Redis db)


def _timelines(settings: Settings, scratch_db: int) -> RebuildTarget:
    if settings.timeline_backend == "cassandra":
        from projections.timelines_cassandra_rebuild import CassandraTimelineRebuild
        return CassandraTimelineRebuild(settings)
    from projections.timelines_sqlite_rebuild import SqliteTimelineRebuild
    return SqliteTimelineRebuild(settings)


def _search(settings: Settings, scratch_db: int) -> RebuildTarget:
    from projections.search_rebuild import SearchRebuild
    return SearchRebuild(settings)


def _redis(name: str, module: str, cls: str) -> Callable[[Settings, int], RebuildTarget]:
    def make(settings: Settings, scratch_db: int) -> RebuildTarget:
        import importlib

        from projections.shadow_redis import RedisShadowRebuild
        mod = importlib.import_module(module)
        kind = getattr(mod, cls)
        if name == "presence":  # its projection also takes the presence TTL
            kind = functools.partial(kind, ttl_s=settings.presence_ttl)
        return RedisShadowRebuild(name, settings.redis_url, scratch_db, kind, mod.OWNED_KEYS, mod.SCAN_PATTERNS,
                                  redis_options(settings))
    return make


def _events_topic(settings: Settings) -> str:
    return settings.events_topic


def _presence_topic(settings: Settings) -> str:
    return settings.presence_topic


def _profiles_topic(settings: Settings) -> str:
    return settings.profiles_topic


# name -> spec; None: known but not rebuildable yet. Plugging in a projection is one entry
# (and, for a Redis one, ``OWNED_KEYS`` and ``SCAN_PATTERNS`` in its module).
REGISTRY: dict[str, ProjectionSpec | None] = {
    "timelines": ProjectionSpec("timelines", _events_topic,
                                (MessageAccepted, MessageEdited, MessageDeleted, ReactionChanged), _timelines),
    "conversations": ProjectionSpec(
        "conversations", _events_topic,
        (ConversationCreated, ConversationUpdated, MembersAdded, MemberRemoved, MessageAccepted, MessageEdited,
         MessageDeleted, ReactionChanged),
        _redis("conversations", "projections.conversations", "ConversationProjection")),
    "receipts": ProjectionSpec("receipts", _events_topic, (MessageAccepted, ReceiptRecorded),
                               _redis("receipts", "projections.receipts", "ReceiptProjection")),
    "presence": ProjectionSpec("presence", _presence_topic, (PresenceChanged,),
                               _redis("presence", "projections.presence", "PresenceProjection")),
    "social": ProjectionSpec("social", _events_topic,
                             (BlockChanged, MuteChanged, MessageAccepted, MessageDeleted, ReceiptRecorded),
                             _redis("social", "projections.social", "SocialProjection")),
    "search": ProjectionSpec("search", _events_topic, (MessageAccepted, MessageEdited, MessageDeleted), _search),
    "profiles": ProjectionSpec("profiles", _profiles_topic, (ProfileUpdated,),
                               _redis("profiles", "projections.profiles", "ProfileProjection")),
}


def resolve(names: Sequence[str]) -> list[ProjectionSpec]:
    """Specs for names (``all``: every available one); ``NotFound`` for the rest."""
    if "all" in names:
        return [spec for spec in REGISTRY.values() if spec is not None]
    specs = []
    for name in names:
        if name not in REGISTRY:
            raise NotFound(f"no projection {name!r} (known: {', '.join(REGISTRY)}, all)")
        spec = REGISTRY[name]
        if spec is None:
            raise NotFound(f"the {name} projection cannot be rebuilt yet: it is not in this version")
        specs.append(spec)
    return specs


@dataclass
class Outcome:
    projection: str
    events: int  # events of the log range that this projection applies
    seconds: float  # the replay into the fresh copy (or the dry run's read)
    size_before: int = 0
    size_after: int = 0
    caught_up: int = 0
    by_type: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


class Meter(Protocol):
    total: int | None

    def add(self, n: int) -> None: ...


async def rebuild(settings: Settings, specs: Sequence[ProjectionSpec], *, scratch_db: int,
                  dry_run: bool = False, meter: Meter | None = None) -> list[Outcome]:
    """Rebuild (or, ``dry_run``, count) each projection; one read of each topic for all of them."""
    outcomes: list[Outcome] = []
    for topic in dict.fromkeys(spec.topic(settings) for spec in specs):
        group = [spec for spec in specs if spec.topic(settings) == topic]
        run = _count if dry_run else _rebuild_topic
        outcomes += await run(settings, topic, group, scratch_db, meter)
    return outcomes


async def _rebuild_topic(settings: Settings, topic: str, group: list[ProjectionSpec], scratch_db: int,
                         meter: Meter | None) -> list[Outcome]:
    targets = [spec.target(settings, scratch_db) for spec in group]
    outcomes = [Outcome(spec.name, 0, 0.0) for spec in group]
    keys = make_message_key_store(settings) if topic == settings.events_topic else None
    try:
        if keys is not None:  # sealed bodies are opened with the message keys, never rebuilt
            await keys.open()
        for target in targets:
            await target.open()
        with TopicReader(settings.kafka_bootstrap, topic, config=kafka_security(settings)) as reader:
            first = await write_markers(settings, topic, reader.partitions)
            if meter is not None:
                meter.total = sum(offset + 1 for offset in first.values())
            started = time.monotonic()
            await _replay(reader, dict.fromkeys(first, BEGINNING), first, _fan_out(group, targets, outcomes),
                          meter, keys)
            seconds = time.monotonic() - started
            for outcome, target in zip(outcomes, targets):
                outcome.seconds = seconds
                outcome.size_before = await target.size()
                outcome.size_after = await target.switch()
        with TopicReader(settings.kafka_bootstrap, topic, config=kafka_security(settings)) as reader:
            second = await write_markers(settings, topic, reader.partitions)
            live = _fan_out(group, targets, outcomes, live=True)
            await _replay(reader, {p: offset + 1 for p, offset in first.items()}, second, live, None, keys)
    finally:
        for target in targets:
            await target.close()
        if keys is not None:
            await keys.close()
    return outcomes


def _fan_out(group: list[ProjectionSpec], targets: list[RebuildTarget], outcomes: list[Outcome],
             live: bool = False) -> Callable[[list[Event]], Any]:
    async def apply(events: list[Event]) -> None:
        writes = []  # independent projections: written concurrently
        for spec, target, outcome in zip(group, targets, outcomes):
            mine = [e for e in events if isinstance(e, spec.handles)]
            if live:
                outcome.caught_up += len(mine)
                writes.append(target.apply_live(mine))
            else:
                outcome.events += len(mine)
                writes.append(target.apply(mine))
        await asyncio.gather(*writes)
    return apply


async def _count(settings: Settings, topic: str, group: list[ProjectionSpec], scratch_db: int,
                 meter: Meter | None) -> list[Outcome]:
    outcomes = [Outcome(spec.name, 0, 0.0) for spec in group]

    async def count(events: list[Event]) -> None:
        for spec, outcome in zip(group, outcomes):
            for event in events:
                if isinstance(event, spec.handles):
                    outcome.events += 1
                    outcome.by_type[event.TYPE] = outcome.by_type.get(event.TYPE, 0) + 1

    started = time.monotonic()
    with TopicReader(settings.kafka_bootstrap, topic, config=kafka_security(settings)) as reader:
        await _replay(reader, dict.fromkeys(reader.partitions, BEGINNING), None, count, meter)
    for outcome in outcomes:
        outcome.seconds = time.monotonic() - started
    return outcomes


async def write_markers(settings: Settings, topic: str, partitions: Sequence[int]) -> dict[int, int]:
    """One durable marker per partition; returns partition -> the marker's offset."""
    producer = AsyncProducer(settings.kafka_bootstrap, log_level=0, **kafka_security(settings))
    codec, nonce, now_ms = default_codec(), uuid.uuid4().hex, int(time.time() * 1000)
    try:
        sent = {p: producer.send(topic, codec.encode(
            PartitionFenced(p, f"rebuild:{settings.worker_id}", nonce, now_ms)), partition=p) for p in partitions}
        return {p: await future for p, future in sent.items()}
    finally:
        await asyncio.to_thread(producer.close)


async def _replay(reader: TopicReader, start: dict[int, int], stop: dict[int, int] | None,
                  apply: Callable[[list[Event]], Any], meter: Meter | None,
                  keys: MessageKeyStore | None = None) -> None:
    codec = default_codec()
    batches: Iterator[list[Any]] = reader.read(start, stop)
    upcoming = asyncio.ensure_future(asyncio.to_thread(next, batches, None))
    try:
        while (batch := await upcoming) is not None:
            upcoming = asyncio.ensure_future(asyncio.to_thread(next, batches, None))  # read ahead
            events = _decoded(codec, batch)
            await apply(await open_batch(keys, events) if keys is not None else events)
            if meter is not None:
                meter.add(len(batch))
    finally:
        await asyncio.wait([upcoming])  # the reader is closed next: never under a running read


def _decoded(codec: Any, batch: list[Any]) -> list[Event]:
    events = []
    for msg in batch:
        try:
            events.append(codec.decode(msg.value()).event)
        except SchemaError as exc:  # logged and skipped, as sequencer recovery does
            log.error("skipping undecodable record", extra={"partition": msg.partition(),
                                                            "offset": msg.offset(), "code": str(exc)})
    return events
