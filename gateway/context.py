"""What the gateway's handlers share: typed app keys and the command path."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio as redis
from aiohttp import web

from chat import frames
from chat.errors import BadRequest, NotFound, TooLarge, error_for_code
from chat.events import (
    MessageDeleteRequested, MessageEditRequested, MessageSendRequested, Origin, ReactionRequested,
)
from chat.ids import new_request_id
from chat.settings import Settings
from gateway.kafka import CommandProducer, DeliveryConsumer
from gateway.limits import TokenBucket
from gateway.metrics import Metrics
from gateway.pipeline import Prober
from gateway.presence import PresenceSignals
from gateway.registry import Registry
from gateway.typing import Typing
from projections.conversations import ConversationProjection
from projections.presence import PresenceProjection
from projections.timelines import TimelineStore
from projections.receipts import ReceiptProjection
from projections.signals import SignalBus
from projections.workers import WorkerRegistry

MAX_ID_CHARS = 128
MAX_SEQ = 2**63 - 1  # seqs are signed 64-bit in Avro, SQLite and Cassandra


@dataclass
class Gateway:
    settings: Settings
    redis: redis.Redis
    timelines: TimelineStore
    conversations: ConversationProjection
    registry: Registry
    producer: CommandProducer
    consumer: DeliveryConsumer
    metrics: Metrics
    workers: WorkerRegistry
    receipts: ReceiptProjection
    send_limit: TokenBucket
    presence: PresenceProjection
    presence_signals: PresenceSignals
    typing: Typing
    prober: Prober
    signals: SignalBus
    media: Any = None  # gateway.media.MediaService, set by its cleanup_ctx
    search: Any = None  # projections.search.SearchIndex (opened with the gateway)
    admissions: Any = None  # gateway.limits.Admissions, made on the first send

    def origin(self, device_id: str | None = None, request_id: str | None = None) -> Origin:
        return Origin(self.settings.gateway_id, device_id, request_id)

    async def require_member(self, conversation_id: str, user_id: str) -> str:
        """The user's role; unknown conversations and non-members read the same (nothing leaks)."""
        return self.member(await self.conversations.role(conversation_id, user_id))

    @staticmethod
    def member(role: str | None) -> str:
        if role is None:
            raise NotFound("no such conversation")
        return role

    async def readable_until(self, conversation_id: str, user_id: str) -> int | None:
        """How far a user may read a conversation's history: None for everything (a member),
        the seq of their removal for a former member. Anyone else gets ``NotFound``."""
        role, former_seq = await self.conversations.access(conversation_id, user_id)
        if role is not None:
            return None
        if former_seq is not None:
            return former_seq
        raise NotFound("no such conversation")

    def send_command(self, user_id: str, data: dict[str, Any], device_id: str | None,
                     request_id: str | None = None) -> MessageSendRequested:
        """Validate a send (WebSocket frame or HTTP body) and produce its command."""
        conversation_id = id_field(data, "conversation_id")
        client_msg_id = id_field(data, "client_msg_id")
        body = data.get("body", "")
        media_id = data.get("media_id")
        if not isinstance(body, str):
            raise BadRequest("body must be a string", ref=client_msg_id)
        if media_id is not None and not isinstance(media_id, str):
            raise BadRequest("media_id must be a string", ref=client_msg_id)
        if len(body.encode()) > self.settings.max_body_bytes:
            raise TooLarge(f"body is over {self.settings.max_body_bytes} bytes", ref=client_msg_id)
        reply_to = data.get("reply_to")
        if reply_to is not None:
            reply_to = seq_value(reply_to, "reply_to", ref=client_msg_id)
        mentions = data.get("mentions")
        if mentions is None:
            mentions = []
        if not isinstance(mentions, list) or not all(isinstance(u, str) and 0 < len(u) <= MAX_ID_CHARS
                                                     for u in mentions):
            raise BadRequest("mentions must be a list of user ids", ref=client_msg_id)
        if len(mentions) > self.settings.max_mentions:
            raise TooLarge(f"at most {self.settings.max_mentions} mentions", ref=client_msg_id)
        command = MessageSendRequested(conversation_id=conversation_id, sender_id=user_id,
                                       client_msg_id=client_msg_id, body=body,
                                       origin=self.origin(device_id, request_id), media_id=media_id,
                                       reply_to=reply_to, mentions=list(dict.fromkeys(mentions)))
        self.metrics.sent(user_id, client_msg_id)
        return command

    def change_command(self, user_id: str, kind: str, data: dict[str, Any], device_id: str | None,
                       request_id: str | None = None
                       ) -> MessageEditRequested | MessageDeleteRequested | ReactionRequested:
        """Validate an edit, delete or react (protocol 1.1: a WebSocket frame, or an HTTP call
        whose body and path were put into ``data``) and make its command. ``id`` is required on a
        frame; an HTTP call gets a fresh one (HTTP has no retry key in the protocol)."""
        change_id = id_field(data, "id")
        conversation_id = id_field(data, "conversation_id", ref=change_id)
        seq = seq_value(data.get("seq"), "seq", ref=change_id)
        origin = self.origin(device_id, request_id)
        common = {"conversation_id": conversation_id, "user_id": user_id, "change_id": change_id, "seq": seq,
                  "origin": origin}
        if kind == "edit":
            body = data.get("body")
            if not isinstance(body, str):
                raise BadRequest("body is required and must be a string", ref=change_id)
            if len(body.encode()) > self.settings.max_body_bytes:
                raise TooLarge(f"body is over {self.settings.max_body_bytes} bytes", ref=change_id)
            return MessageEditRequested(body=body, **common)
        if kind == "delete":
            return MessageDeleteRequested(**common)
        emoji, on = data.get("emoji"), data.get("on")
        if not isinstance(emoji, str) or not 1 <= len(emoji.encode()) <= 64:
            raise BadRequest("emoji must be 1 to 64 bytes of UTF-8", ref=change_id)
        if not isinstance(on, bool):
            raise BadRequest("on must be true or false", ref=change_id)
        return ReactionRequested(emoji=emoji, on=on, **common)

    async def request(self, command: Any, key: str, request_id: str) -> tuple[int, Any]:
        """Produce a command and wait for the workers' answer: (HTTP status, frame)."""
        waiter = self.registry.expect(request_id)
        await self.producer.send(command, key)
        status, frame = await self.registry.wait(request_id, waiter, self.settings.request_timeout_s)
        decoded = frames.decode(frame)
        if decoded.get("type") == "error":
            raise error_for_code(decoded["code"], decoded["message"])
        return status, decoded


def id_field(data: dict[str, Any], name: str, ref: str | None = None) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{name} is required and must be a non-empty string", ref=ref)
    if len(value) > MAX_ID_CHARS:
        raise BadRequest(f"{name} is longer than {MAX_ID_CHARS} characters", ref=ref)
    return value


def seq_value(value: Any, name: str, *, least: int = 1, ref: str | None = None) -> int:
    """A seq from a client (an HTTP parameter or a frame field): an int, not a bool, from
    ``least`` (1 for a seq, 0 for a cursor that has seen nothing) to ``MAX_SEQ``; anything else
    is ``BadRequest`` before it reaches a store that could not hold it."""
    if not isinstance(value, int) or isinstance(value, bool) or not least <= value <= MAX_SEQ:
        raise BadRequest(f"{name} must be an integer from {least} to {MAX_SEQ}", ref=ref)
    return value


def now_ms() -> int:
    return int(time.time() * 1000)


def new_request() -> str:
    return new_request_id()


GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway", Gateway)
SETTINGS: web.AppKey[Settings] = web.AppKey("settings", Settings)
