"""Server-to-client JSON frames of PROTOCOL.md, encoded once with orjson.

The worker builds delivery frames here and the gateway writes the bytes to its
sockets unchanged, so a frame fanned out to a thousand devices is encoded once.
"""

from __future__ import annotations

from typing import Any

import orjson

from media.urls import media_object
from chat.events import ConversationCreated, MessageAccepted, MessageDeduplicated, PresenceChanged, ReceiptRecorded


def encode(frame: dict[str, Any]) -> bytes:
    return orjson.dumps(frame)


def decode(data: bytes | str) -> Any:
    return orjson.loads(data)


def message_object(m: MessageAccepted) -> dict[str, Any]:
    media = None
    if m.media is not None:
        media = media_object(m.media.media_id, m.media.content_type, m.media.size, m.media.url)
    return {"conversation_id": m.conversation_id, "seq": m.seq, "message_id": m.message_id,
            "sender_id": m.sender_id, "client_msg_id": m.client_msg_id, "body": m.body,
            "media": media, "sent_at": m.sent_at}


def conversation_object(c: ConversationCreated) -> dict[str, Any]:
    return {"conversation_id": c.conversation_id, "type": c.kind, "name": c.name,
            "description": c.description,
            "members": [{"user_id": m.user_id, "role": m.role} for m in c.members],
            "created_at": c.created_at}


def message_frame(m: MessageAccepted) -> bytes:
    return encode({"type": "message", "message": message_object(m)})


def ack_frame(m: MessageAccepted | MessageDeduplicated) -> bytes:
    return encode({"type": "ack", "client_msg_id": m.client_msg_id, "conversation_id": m.conversation_id,
                   "seq": m.seq, "message_id": m.message_id, "sent_at": m.sent_at})


def receipt_frame(r: ReceiptRecorded) -> bytes:
    return encode({"type": "receipt", "conversation_id": r.conversation_id, "user_id": r.user_id,
                   "seq": r.seq, "status": r.status})


def presence_frame(p: PresenceChanged) -> bytes:
    return encode({"type": "presence", "user_id": p.user_id, "status": p.status, "last_seen": p.last_seen})


def typing_frame(conversation_id: str, user_id: str, typing: bool, ttl_ms: int) -> bytes:
    """``ttl_ms`` (an addition to PROTOCOL.md): how long the indicator lasts without a refresh."""
    frame: dict[str, Any] = {"type": "typing", "conversation_id": conversation_id, "user_id": user_id,
                             "typing": typing}
    if typing:
        frame["ttl_ms"] = ttl_ms
    return encode(frame)


def conversation_frame(conversation: dict[str, Any]) -> bytes:
    return encode({"type": "conversation", "conversation": conversation})


def error_frame(code: str, message: str, ref: str | None = None, **extra: Any) -> bytes:
    frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if ref is not None:
        frame["ref"] = ref
    frame.update(extra)
    return encode(frame)
