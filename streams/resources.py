"""What the worker's agents write to: Redis, the timeline store, the projections.

Opened once, on first use, and closed when the worker stops.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Sequence


from chat import redis_pool
from chat.codec import default_codec
from chat.errors import ChatError, UnknownTopic
from chat.events import Delivery, Event, MessageDeleted, PipelineProbe, event_key
from chat.kafka import AsyncProducer
from chat.secure import kafka_security
from chat.settings import Settings
from projections.connections import ConnectionRegistry
from projections.conversations import ConversationProjection
from projections.delivery import DeliveryRouter, PresenceRouter, batched
from projections.media import MediaProjection
from projections.push import DeviceRegistry, PushPlanner
from projections.presence import PresenceProjection
from projections.receipts import ReceiptProjection
from projections.social import SocialProjection, SocialRouter
from projections.message_keys import MessageKeyStore, make_message_key_store
from projections.search import SearchIndex, make_search_index
from projections.timelines import TimelineStore, make_timeline_store
from projections.workers import WorkerRegistry


log = logging.getLogger(__name__)

PROBE_FRAME = b'{"type":"probe"}'  # the answer to a PipelineProbe: a request's answer, never a client's frame


class Resources:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.redis = redis_pool.connect(settings)
        self.timelines: TimelineStore = make_timeline_store(settings)
        self.search: SearchIndex = make_search_index(settings)
        self.keys: MessageKeyStore = make_message_key_store(settings)
        self.conversations = ConversationProjection(self.redis)
        self.receipts = ReceiptProjection(self.redis)
        self.media = MediaProjection.from_settings(self.redis, settings)  # where media was sent: before delivery
        self.connections = ConnectionRegistry(self.redis, settings.connection_ttl_s)
        self.router = DeliveryRouter(self.conversations, self.connections)
        self.social = SocialProjection(self.redis)  # blocks, mutes, mentions
        self.push = PushPlanner(self.conversations, self.connections,
                                DeviceRegistry(self.redis, settings.push_private_default), self.router.members_of,
                                mutes=self.social.mutes)
        self.presence = PresenceProjection(self.redis, settings.presence_ttl)
        self.social_router = SocialRouter(self.conversations, self.connections, self.presence)
        self.presence_router = PresenceRouter(self.conversations, self.connections, self.social.hidden_from)
        self.workers = WorkerRegistry(self.redis, settings.app_id, settings.connection_ttl_s)
        self.producer: AsyncProducer | None = None
        self._media_store: Any = None  # opened on the first deletion of a message with media
        self.codec = default_codec()
        self._opened = False
        self._lock = asyncio.Lock()
        self._sweeper: asyncio.Task[None] | None = None
        self._media_sweeper: asyncio.Task[None] | None = None

    async def ready(self) -> "Resources":
        if not self._opened:
            async with self._lock:
                if not self._opened:
                    self.producer = AsyncProducer(self.settings.kafka_bootstrap,
                                                  **{"linger.ms": self.settings.kafka_linger_ms},
                                                  **kafka_security(self.settings))
                    await self.timelines.open()
                    await self.search.open()
                    await self.keys.open()
                    await self.redis.ping()
                    self._sweeper = asyncio.create_task(self._sweep_forever())
                    self._media_sweeper = asyncio.create_task(self._expire_media_forever())
                    self._opened = True
        return self

    def publish(self, topic: str, event: Event, partition: int) -> asyncio.Future[int]:
        """Produce an event to a given partition; resolves to its offset once durable.

        Records sent one after another to a partition keep that order (idempotent producer).
        """
        assert self.producer is not None, "publish() before ready()"
        key = event_key(event)
        return self.producer.send(topic, self.codec.encode(event, key=key), key=key.encode() or None,
                                  partition=partition)

    def publish_keyed(self, topic: str, event: Event) -> asyncio.Future[int]:
        """Produce an event to the partition of its key (murmur2, as the gateways do)."""
        assert self.producer is not None, "publish_keyed() before ready()"
        key = event_key(event)
        return self.producer.send(topic, self.codec.encode(event, key=key), key=key.encode() or None)

    async def push_offline(self, events: Sequence[Event], seen: dict[str, dict[str, str]] | None = None) -> None:
        """A ``PushRequested`` per accepted message and offline registered device (see
        ``projections/push.py``) on the push topic; returns once they are durable. ``seen``: the
        connections the batch's delivery read. Sending, with its retries, happens in the push
        agent, off this pipeline."""
        jobs = await self.push.plan(events, seen)
        await asyncio.gather(*(self.publish_keyed(self.settings.push_topic, job) for job in jobs))

    async def deliver(self, routed: Sequence[tuple[str, Delivery]]) -> None:
        """Each delivery to its gateway's topic, one ``DeliveryBatch`` record per gateway
        (``batched``); returns once all are durable.

        A gateway whose topic does not exist (its topic deleted after it left, or an origin that
        was never a gateway) cannot be delivered to, ever: its deliveries are dropped, or the
        partition's projection would stop behind them. Its clients, if any, sync on reconnect."""
        records = batched(routed)
        results = await asyncio.gather(*(self.publish(self.settings.delivery_topic(gateway_id), batch, 0)
                                         for gateway_id, batch in records), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        for error in failed:
            if not isinstance(error, UnknownTopic):
                raise error
        if failed:
            lost = [(g, b) for (g, b), r in zip(records, results) if isinstance(r, UnknownTopic)]
            log.warning("dropped %d deliveries to gateways with no delivery topic: %s",
                        sum(len(b.deliveries) for _, b in lost), sorted({g for g, _ in lost}))

    async def erase_media(self, events: Sequence[Event]) -> None:
        """Erase the media of deleted messages that nothing else uses (projections/media.py)."""
        if not any(isinstance(e, MessageDeleted) and e.media_id is not None for e in events):
            return
        await self.media.erase_deleted(events, await self.media_store())

    async def media_store(self) -> Any:
        """The media store, opened on first use (erasures and expiry only)."""
        if self._media_store is None:
            from media.store import make_media_store

            store = make_media_store(self.settings)
            await store.open()
            self._media_store = store
        return self._media_store

    async def destroy_keys(self, events: Sequence[Event]) -> None:
        """Destroy the keys of deleted messages (projections/message_keys.py)."""
        deleted = [(e.conversation_id, e.seq) for e in events if isinstance(e, MessageDeleted)]
        if deleted:
            await self.keys.destroy(deleted)

    async def answer_probe(self, probe: PipelineProbe) -> None:
        """Answer a gateway's pipeline probe on its delivery topic (nothing to the events topic);
        a probe from a gateway whose topic is gone has nobody to answer."""
        answer = Delivery(targets=[], frame=PROBE_FRAME, request_id=probe.probe_id)
        try:
            await self.publish(self.settings.delivery_topic(probe.gateway_id), answer, 0)
        except UnknownTopic:
            log.info("no delivery topic for gateway %s: its probe is not answered", probe.gateway_id)

    async def _sweep_forever(self) -> None:
        """Expire old messages in stores without TTL (the embedded one)."""
        while True:
            await asyncio.sleep(self.settings.sweep_interval_s)
            try:
                await self.timelines.sweep()
                await self.search.sweep()
                await self.keys.sweep()
            except ChatError:  # e.g. the store busy for too long: try again next time
                log.exception("timeline sweep failed")

    async def _expire_media_forever(self) -> None:
        """Erase media past their expiry (``projections/media.py``) every
        ``media_sweep_interval_s``, in rounds of 500 until none is due."""
        while True:
            await asyncio.sleep(self.settings.media_sweep_interval_s)
            try:
                store = await self.media_store()
                while len(await self.media.expire(store, int(time.time() * 1000))) == 500:
                    pass
            except Exception:  # Redis or the store away: try again next time
                log.exception("media expiry sweep failed")

    async def close(self) -> None:
        if self._opened:
            await self.workers.leave(self.settings.worker_id)
        for task in (self._sweeper, self._media_sweeper):
            if task is not None:
                task.cancel()
        if self.producer is not None:
            await asyncio.to_thread(self.producer.close)
        if self._media_store is not None:
            await self._media_store.close()
        if self._opened:
            await self.timelines.close()
            await self.search.close()
            await self.keys.close()
        await self.redis.aclose()
