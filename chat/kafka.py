"""An asyncio face on confluent-kafka's producer, for the gateway and the stream workers.

librdkafka's idempotent producer (which works on Tansu, unlike aiokafka's) keeps each
partition's records in order and never writes a retried record twice. Its callbacks run
in a polling thread and settle asyncio futures on the loop that sent.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from chat.errors import Unavailable


class AsyncProducer:
    def __init__(self, bootstrap: str, **config: Any) -> None:
        self._producer = Producer({
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 1,
            # The Java client's partitioner, as aiokafka's: one key, one partition, whoever produces.
            "partitioner": "murmur2_random",
            **config,
        })
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="kafka-producer", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    def send(self, topic: str, value: bytes, *, key: bytes | None = None,
             partition: int | None = None) -> asyncio.Future[int]:
        """Produce one record; the future resolves to its offset once all in-sync replicas have it."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()

        def settle(err: KafkaError | None, offset: int) -> None:
            if future.done():
                return
            if err is None:
                future.set_result(offset)
            else:
                future.set_exception(Unavailable(f"broker refused a record for {topic}: {err.str()}"))

        def done(err: KafkaError | None, msg: Message) -> None:
            loop.call_soon_threadsafe(settle, err, msg.offset() if err is None else -1)

        kwargs: dict[str, Any] = {"key": key, "on_delivery": done}
        if partition is not None:
            kwargs["partition"] = partition
        try:
            self._producer.produce(topic, value, **kwargs)
        except BufferError:
            self._producer.poll(0)
            future.set_exception(Unavailable("the producer queue is full"))
        except KafkaException as exc:
            future.set_exception(Unavailable(f"cannot queue a record for {topic}: {exc}"))
        return future

    def reachable(self, topic: str, timeout: float = 2.0) -> bool:
        try:
            self._producer.list_topics(topic, timeout=timeout)
            return True
        except KafkaException:
            return False

    def close(self, timeout: float = 10.0) -> None:
        self._producer.flush(timeout)
        self._stop.set()
        self._thread.join(timeout)


def consume_available(consumer: Any, max_records: int, timeout: float) -> list[Message]:
    """Records as soon as there are any: wait up to ``timeout`` for the first, then take what
    is already fetched. (``Consumer.consume(n, timeout)`` waits for n records or the whole
    timeout, which added up to that timeout to every hop.)"""
    first = consumer.poll(timeout)
    if first is None:
        return []
    return [first, *consumer.consume(num_messages=max_records - 1, timeout=0)]
