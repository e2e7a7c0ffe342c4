"""A producer that hits a fatal error is replaced, and nothing waits forever.

Seen on the Tansu stand-in (retired): the idempotent producer's sequence numbers fell out of
step with the broker's (a fatal error), the polling thread died of it, and every later send of
that gateway hung; Kafka raises the same fatal error after an unclean leader election. The fatal flag is raised here by hand (librdkafka's own trigger is not reachable
from Python); the replacement, the failing of what was in flight and the sends after it run on
the real broker.
"""

from __future__ import annotations

import asyncio
import time

from chat.errors import Unavailable
from chat.kafka import AsyncProducer
from infra.topics import ensure_topics

TOPIC = "producer-renewal"


async def test_after_a_fatal_error_every_send_settles_and_new_ones_go_through(stack):
    ensure_topics(stack.bootstrap, {TOPIC: 1})
    producer = AsyncProducer(stack.bootstrap)
    try:
        first = await asyncio.wait_for(producer.send(TOPIC, b"before"), 15)
        in_flight = [producer.send(TOPIC, b"x" * 100) for _ in range(500)]
        producer._fatal.set()  # what the error callback does on a fatal error
        deadline = time.monotonic() + 5
        while producer.renewals == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert producer.renewals == 1
        settled = await asyncio.wait_for(asyncio.gather(*in_flight, return_exceptions=True), 15)
        assert all(isinstance(r, int) or isinstance(r, Unavailable) for r in settled), settled[:3]
        after = await asyncio.wait_for(producer.send(TOPIC, b"after"), 15)
        assert after > first
    finally:
        await asyncio.to_thread(producer.close)
