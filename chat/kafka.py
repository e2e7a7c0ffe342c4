"""An asyncio face on confluent-kafka's producer, for the gateway and the stream workers.

librdkafka's idempotent producer keeps each partition's records in order and never writes a
retried record twice. Its callbacks run
in a polling thread and settle asyncio futures on the loop that sent.

A fatal producer error (the idempotent producer's sequence numbers out of step with the
broker's, e.g. after records were lost by an unclean leader election) would leave the producer unusable for
good, and the polling thread died of it, so no future settled again: the process hung. Now the
producer is replaced by a new one (a new producer id); what the old one had not had
acknowledged fails with ``Unavailable``, for its senders to send again (commands are
idempotent by ``client_msg_id``; clients re-send).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import threading
from typing import Any, Callable

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from chat.errors import Unavailable, UnknownTopic

log = logging.getLogger(__name__)
# librdkafka's own lines (a broker gone, a coordinator still loading) go through logging, so
# they are JSON lines with the process's context like every other, not plain text on stderr.
# A client given it must be polled (its poll(), consume() or a thread doing so) to emit them.
RDKAFKA_LOG = logging.getLogger("librdkafka")

# A record for a topic the broker does not have (topics are never created on first use): the
# broker's answer, and librdkafka's own once its metadata says so.
_NO_TOPIC = (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC)


class AsyncProducer:
    def __init__(self, bootstrap: str, **config: Any) -> None:
        self._config = {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 1,
            # The Java client's partitioner, as aiokafka's: one key, one partition, whoever produces.
            "partitioner": "murmur2_random",
            # A record for a topic the broker does not have fails after this long (librdkafka
            # waits 30 s by default for it to appear). Topics are created up front, so waiting
            # only stalled a projector behind a delivery that could never be made, and then the
            # worker's shutdown behind its flush.
            "topic.metadata.propagation.max.ms": 1000,
            "logger": RDKAFKA_LOG,
            **config,
        }
        self._generations = itertools.count()
        self._fatal = threading.Event()
        # Each producer's unsettled futures: what its purge does not report is failed by hand.
        self._pending_lock = threading.Lock()
        self._pending: set[asyncio.Future[int]] = set()
        # Delivery reports gathered during one poll(), handed to their loops in one wake-up
        # each (a call_soon_threadsafe per record was a tenth of a busy process's time).
        self._reports: collections.deque[tuple[asyncio.AbstractEventLoop, Callable[..., None], Any, int]] = \
            collections.deque()
        self._producer = self._new_producer()
        self.renewals = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="kafka-producer", daemon=True)
        self._thread.start()

    def _new_producer(self) -> Producer:
        generation = self._generation = next(self._generations)

        def on_error(error: KafkaError) -> None:  # on the polling thread, from poll()
            if error.fatal() and generation == self._generation:
                self._fatal.set()

        return Producer({**self._config, "error_cb": on_error})

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                self._producer.poll(0.05)
            except KafkaException as exc:  # poll() raises what no callback took: never let it end the thread
                log.error("kafka producer: %s", exc.args[0])
                if exc.args[0].fatal():
                    self._fatal.set()
            self._hand_over()
            if self._fatal.is_set():
                self.renew()

    def renew(self) -> None:
        """Replace the producer; the old one's unacknowledged records fail (``Unavailable``)."""
        self._fatal.clear()
        with self._pending_lock:
            old, self._producer = self._producer, self._new_producer()
            old_pending, self._pending = self._pending, set()
        self.renewals += 1
        log.error("kafka producer hit a fatal error: replaced by a new one; its unacknowledged records fail")
        try:
            old.purge()
            # The purged records' delivery callbacks: those of in-flight records come from the
            # broker threads a little later, so one poll(0) missed some and their senders hung.
            old.flush(5)
            self._hand_over()
        except KafkaException as exc:
            log.warning("purging the failed producer: %s", exc.args[0])
        with self._pending_lock:
            unsettled = list(old_pending)
        for future in unsettled:  # whatever the old producer never reported
            future.get_loop().call_soon_threadsafe(
                _fail, future, Unavailable("the producer failed before the broker acknowledged the record"))

    def send(self, topic: str, value: bytes, *, key: bytes | None = None,
             partition: int | None = None) -> asyncio.Future[int]:
        """Produce one record; the future resolves to its offset once all in-sync replicas have it."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()

        def settle(err: KafkaError | None, offset: int) -> None:
            with self._pending_lock:
                pending.discard(future)
            if future.done():
                return
            if err is None:
                future.set_result(offset)
            elif err.code() in _NO_TOPIC:
                future.set_exception(UnknownTopic(f"no topic {topic!r}: {err.str()}"))
            else:
                future.set_exception(Unavailable(f"broker refused a record for {topic}: {err.str()}"))

        def done(err: KafkaError | None, msg: Message) -> None:  # in poll() or flush()
            self._reports.append((loop, settle, err, msg.offset() if err is None else -1))

        kwargs: dict[str, Any] = {"key": key, "on_delivery": done}
        if partition is not None:
            kwargs["partition"] = partition
        with self._pending_lock:  # one producer and its own pending set, never a mix
            producer, pending = self._producer, self._pending
            pending.add(future)
        try:
            producer.produce(topic, value, **kwargs)
        except BufferError:
            producer.poll(0)
            self._hand_over()
            _fail(future, Unavailable("the producer queue is full"))
        except KafkaException as exc:
            kind = UnknownTopic if exc.args[0].code() in _NO_TOPIC else Unavailable
            _fail(future, kind(f"cannot queue a record for {topic}: {exc}"))
        else:
            return future
        with self._pending_lock:
            pending.discard(future)
        return future

    def _hand_over(self) -> None:
        """The delivery reports gathered so far, to their loops: one call per loop."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Callable[..., None], Any, int]]] = {}
        while True:
            try:
                loop, settle, err, offset = self._reports.popleft()
            except IndexError:
                break
            by_loop.setdefault(loop, []).append((settle, err, offset))
        for loop, reports in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle_all, reports)
            except RuntimeError:  # that loop is closed: nobody waits any more
                pass

    def reachable(self, topic: str, timeout: float = 2.0) -> bool:
        try:
            self._producer.list_topics(topic, timeout=timeout)
            return True
        except KafkaException:
            return False

    def close(self, timeout: float = 10.0) -> None:
        self._producer.flush(timeout)
        self._hand_over()
        self._stop.set()
        self._thread.join(timeout)


def _settle_all(reports: list[tuple[Callable[..., None], Any, int]]) -> None:
    for settle, err, offset in reports:
        settle(err, offset)


def _fail(future: asyncio.Future[int], error: Exception) -> None:
    if not future.done():
        future.set_exception(error)


def consume_available(consumer: Any, max_records: int, timeout: float) -> list[Message]:
    """Records as soon as there are any: wait up to ``timeout`` for the first, then take what
    is already fetched. (``Consumer.consume(n, timeout)`` waits for n records or the whole
    timeout, which added up to that timeout to every hop.)"""
    first = consumer.poll(timeout)
    if first is None:
        return []
    return [first, *consumer.consume(num_messages=max_records - 1, timeout=0)]
