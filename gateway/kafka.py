"""The gateway's Kafka side, on confluent-kafka: a producer of commands and a consumer of
this gateway's own delivery topic. librdkafka's calls block, so each runs its polling in a
thread and hands results to the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from chat.codec import default_codec
from chat.errors import SchemaError
from chat.kafka import RDKAFKA_LOG, AsyncProducer, consume_available
from chat.events import Delivery, DeliveryBatch, Event
from chat.secure import kafka_security
from chat.settings import Settings
from infra.topics import durability, ensure_topics

log = logging.getLogger(__name__)


class CommandProducer:
    """Commands to the conversation-partitioned commands topic, keyed by conversation id (and
    presence signals to theirs, keyed by user id)."""

    def __init__(self, settings: Settings) -> None:
        self.topic = settings.commands_topic
        self._producer = AsyncProducer(settings.kafka_bootstrap, **{"linger.ms": settings.kafka_linger_ms},
                                       **kafka_security(settings))
        self._codec = default_codec()

    def send(self, event: Event, key: str, topic: str | None = None,
             partition: int | None = None) -> asyncio.Future[int]:
        """The future resolves when the broker has the command (acks=all). ``topic``: another
        topic keyed the same way (the presence signals, keyed by user id); ``partition``: that
        partition rather than the key's (the pipeline probes)."""
        return self._producer.send(topic or self.topic, self._codec.encode(event, key=key),
                                   key=key.encode() or None, partition=partition)

    def broker_reachable(self, timeout: float = 2.0) -> bool:
        return self._producer.reachable(self.topic, timeout)

    def close(self, timeout: float = 5.0) -> None:
        self._producer.close(timeout)


def ensure_delivery_topic(settings: Settings) -> None:
    """This gateway's delivery topic: one partition, so its frames keep their order."""
    topic = settings.delivery_topic(settings.gateway_id)
    ensure_topics(settings.kafka_bootstrap, {topic: 1}, settings.replication_factor,
                  configs={topic: {"retention.ms": str(86_400_000), **durability(settings)}},
                  client_config=kafka_security(settings))


class DeliveryConsumer:
    """Reads this gateway's delivery topic from its current end, hands batches to ``dispatch``."""

    def __init__(self, settings: Settings, dispatch: Callable[[list[Delivery]], None],
                 loop: asyncio.AbstractEventLoop) -> None:
        self.topic = settings.delivery_topic(settings.gateway_id)
        self._consumer = Consumer({
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"gateway-{settings.gateway_id}",  # required; offsets are never committed
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            # Kafka answers a fetch as soon as a record arrives (fetch.min.bytes 1): the wait
            # only bounds an idle fetch, so it need not be short.
            "fetch.wait.max.ms": settings.fetch_max_wait_ms,
            "fetch.min.bytes": 1,
            "logger": RDKAFKA_LOG,
            **kafka_security(settings),
        })
        self._dispatch = dispatch
        self._loop = loop
        self._codec = default_codec()
        self._stop = threading.Event()
        self.assigned = threading.Event()
        self.last_poll = time.monotonic()  # when the reading thread last came back from a poll
        self.lag: int | None = None  # records on the topic not read yet, as of the last second
        self._thread = threading.Thread(target=self._run, name="delivery-consumer", daemon=True)

    def start(self) -> None:
        # Start where the topic ends now: this gateway has no sockets yet, and clients that
        # were connected before a restart catch up with `sync`.
        # A fresh topic may not report offsets yet: then start at its beginning, never at a
        # lazily resolved "latest", which could skip the first answers.
        try:
            _low, high = self._consumer.get_watermark_offsets(TopicPartition(self.topic, 0), timeout=10)
        except KafkaException as exc:
            log.warning("no end offset for %s yet (%s): reading from the beginning", self.topic, exc)
            high = -1
        start = high if high is not None and high >= 0 else OFFSET_BEGINNING
        self._consumer.assign([TopicPartition(self.topic, 0, start)])
        log.info("consuming %s from offset %s", self.topic, start)
        self.assigned.set()
        self._thread.start()

    def _run(self) -> None:
        measured = 0.0
        while not self._stop.is_set():
            self.last_poll = time.monotonic()
            if self.last_poll - measured > 1.0:
                self._measure_lag()
                measured = self.last_poll
            try:
                messages = consume_available(self._consumer, 1_000, 0.1)
            except KafkaException as exc:
                log.warning("delivery consume failed: %s", exc)
                continue
            batch = []
            for msg in messages:
                if msg.error():
                    if msg.error().code() != KafkaError._PARTITION_EOF:
                        log.warning("delivery read error: %s", msg.error())
                    continue
                try:
                    event = self._codec.decode(msg.value()).event
                except SchemaError as exc:
                    log.error("undecodable delivery at offset %d: %s", msg.offset(), exc)
                    continue
                if isinstance(event, DeliveryBatch):
                    batch.extend(event.deliveries)
                elif isinstance(event, Delivery):
                    batch.append(event)
            if batch:
                self._loop.call_soon_threadsafe(self._dispatch, batch)

    def reading(self, within_s: float = 5.0) -> bool:
        """Assigned, and the reading thread came back from a poll within ``within_s`` seconds."""
        return self.assigned.is_set() and time.monotonic() - self.last_poll < within_s

    def _measure_lag(self) -> None:
        """Records on the topic not read yet, from the high watermark of the last fetch
        response (no broker round trip); on the reading thread, so never beside a poll."""
        tp = TopicPartition(self.topic, 0)
        try:
            _low, high = self._consumer.get_watermark_offsets(tp, cached=True)
            (position,) = self._consumer.position([tp])
        except KafkaException:
            return
        if high >= 0 and position.offset >= 0:
            self.lag = max(0, high - position.offset)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self._consumer.close()
