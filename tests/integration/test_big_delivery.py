"""A delivery to more users than one Kafka record may hold: ``batched`` cuts it into records the
broker accepts (1 MiB by default), and a gateway reading them back finds every user once, in order."""

from __future__ import annotations

import asyncio
import uuid

from chat.codec import default_codec
from chat.events import Delivery, DeliveryBatch, Target
from chat.kafka import AsyncProducer
from infra.topics import ensure_topics
from projections.delivery import batched
from tests.support import PartitionReader

USERS = 60_000  # about 1.7 MB of user ids for one gateway


async def test_a_delivery_to_sixty_thousand_users_reaches_the_gateway_topic(stack):
    topic = f"big-{uuid.uuid4().hex[:8]}.delivery.gw"
    ensure_topics(stack.bootstrap, {topic: 1})
    users = [f"member-{i:06d}-of-a-very-big-group" for i in range(USERS)]
    frame = b'{"type":"message","message":{"seq":1}}'
    routed = [("gw", Delivery([Target("first")], b'{"type":"ack"}', "req", 202)),
              ("gw", Delivery([Target(u) for u in users], frame))]
    codec, producer = default_codec(), AsyncProducer(stack.bootstrap)
    try:
        offsets = await asyncio.gather(*(producer.send(topic, codec.encode(batch), partition=0)
                                         for _, batch in batched(routed)))
    finally:
        producer.close()
    assert len(offsets) > 1
    with PartitionReader(stack.bootstrap, topic, 0) as reader:
        records = reader.read_until(lambda r: len(r) == len(offsets), what=f"{len(offsets)} records")
    pieces = [d for r in records if isinstance(r.event, DeliveryBatch) for d in r.event.deliveries]
    assert (pieces[0].frame, pieces[0].users, pieces[0].request_id) == (b'{"type":"ack"}', ["first"], "req")
    assert {p.frame for p in pieces[1:]} == {frame}
    assert [u for p in pieces[1:] for u in p.users] == users
