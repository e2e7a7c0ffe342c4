"""Ephemeral frames (typing, and "replaced") between gateways over Redis pub/sub: never stored, at most once.

Recipients are computed before the receiving gateway, as for the delivery topics: the
sending gateway looks up the conversation's members and the gateways holding their devices,
and publishes one ``Delivery`` record per gateway on that gateway's channel
(``Settings.signals_channel``). Each gateway listens on its own channel only and writes the
frame to the named users' sockets. Why not the delivery topics: a typing frame would then
cross the broker twice and a stream worker, be written to disk it never needs, and wait behind message traffic; a Redis publish
is one round trip. Losing one when Redis restarts costs nothing: the next refresh comes in
seconds and indicators expire on their own.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

import redis.asyncio as redis
from redis.exceptions import RedisError

from chat.codec import default_codec
from chat.errors import SchemaError
from chat.events import Delivery, Target
from chat.settings import Settings
from projections.connections import ConnectionRegistry
from projections.conversations import ConversationProjection
from projections.delivery import fan_out

log = logging.getLogger(__name__)

RETRY_S = 0.5
# Not a client frame: tells a gateway to close its sockets of the targeted devices, which
# reconnected through another gateway (gateway.registry.Registry.dispatch).
REPLACED = b'{"type":"replaced"}'


class SignalBus:
    def __init__(self, client: redis.Redis, settings: Settings, conversations: ConversationProjection,
                 connections: ConnectionRegistry) -> None:
        self.redis = client
        self.settings = settings
        self.conversations = conversations
        self.connections = connections
        self.codec = default_codec()

    async def to_members(self, conversation_id: str, frame: bytes, exclude: str) -> int:
        """Send ``frame`` to the devices of the conversation's members but ``exclude``;
        returns how many gateways it went to."""
        members = [m for m in await self.conversations.members(conversation_id) if m != exclude]
        routed = fan_out(frame, members, await self.connections.gateways(members))
        if routed:
            pipe = self.redis.pipeline(transaction=False)
            for gateway_id, delivery in routed:
                # execute_command: redis-py's cluster pipeline blocks its publish method.
                pipe.execute_command("PUBLISH", self.settings.signals_channel(gateway_id),
                                     self.codec.encode(Delivery(delivery.targets, delivery.frame)))
            await pipe.execute()
        return len(routed)

    async def replaced(self, user_id: str, device_id: str, gateway_id: str) -> None:
        """Tell ``gateway_id`` that the device now has a newer socket elsewhere."""
        delivery = Delivery([Target(user_id, device_id)], REPLACED)
        await self.redis.publish(self.settings.signals_channel(gateway_id), self.codec.encode(delivery))

    async def listen(self, gateway_id: str, dispatch: Callable[[list[Delivery]], None],
                     subscribed: asyncio.Event | None = None) -> None:
        """Hand what arrives on this gateway's channel to ``dispatch``, forever; after a Redis
        failure, subscribe again (what was published meanwhile is lost, by design)."""
        channel = self.settings.signals_channel(gateway_id)
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(channel)
                if subscribed is not None:
                    subscribed.set()
                async for message in pubsub.listen():
                    if message["type"] == "message":
                        self._dispatch(message["data"], dispatch)
            except (RedisError, OSError) as exc:
                log.warning("signals channel %s lost (%s); subscribing again", channel, exc)
                await asyncio.sleep(RETRY_S)
            finally:
                await pubsub.aclose()

    def _dispatch(self, data: bytes, dispatch: Callable[[list[Delivery]], None]) -> None:
        try:
            delivery = self.codec.decode(data).event
        except SchemaError as exc:
            log.error("undecodable signal: %s", exc)
            return
        if isinstance(delivery, Delivery):
            dispatch([delivery])
