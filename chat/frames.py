"""Server-to-client JSON frames of PROTOCOL.md, encoded once with orjson.

The worker builds delivery frames here and the gateway writes the bytes to its
sockets unchanged, so a frame fanned out to a thousand devices is encoded once.
"""

from __future__ import annotations

from typing import Any

import orjson

from media.urls import media_object
from chat.events import (
    CHANGE_NAMES, ChangeAcknowledged, ConversationCreated, MessageAccepted, MessageChange, MessageDeduplicated,
    PresenceChanged, ReceiptRecorded,
)


def encode(frame: dict[str, Any]) -> bytes:
    return orjson.dumps(frame)


def decode(data: bytes | str) -> Any:
    return orjson.loads(data)


def message_object(m: MessageAccepted, reply_body: str = "") -> dict[str, Any]:
    """A new message as the protocol shows it. ``reply_body``: the preview of the replied-to
    message, which the event does not hold (it is read from the timeline as it is now)."""
    media = None
    if m.media is not None:
        media = media_object(m.media.media_id, m.media.content_type, m.media.size, m.media.url)
    reply_to = None
    if m.reply_to is not None:
        reply_to = {"seq": m.reply_to.seq, "sender_id": m.reply_to.sender_id, "body": reply_body}
    return {"conversation_id": m.conversation_id, "seq": m.seq, "message_id": m.message_id,
            "sender_id": m.sender_id, "client_msg_id": m.client_msg_id, "body": m.body,
            "media": media, "sent_at": m.sent_at, "reply_to": reply_to, "mentions": list(m.mentions),
            "edited_at": None, "deleted": False, "reactions": []}


def conversation_object(c: ConversationCreated) -> dict[str, Any]:
    return {"conversation_id": c.conversation_id, "type": c.kind, "name": c.name,
            "description": c.description,
            "members": [{"user_id": m.user_id, "role": m.role} for m in c.members],
            "created_at": c.created_at, "last_change_seq": 0}


def message_frame(m: MessageAccepted, message: dict[str, Any] | None = None) -> bytes:
    return encode({"type": "message", "message": message if message is not None else message_object(m)})


def message_updated_frame(event: MessageChange, message: dict[str, Any]) -> bytes:
    return encode({"type": "message_updated", "conversation_id": event.conversation_id,
                   "change_seq": event.change_seq, "change": CHANGE_NAMES[type(event)], "by": event.user_id,
                   "message": message})


def changed_frame(event: MessageChange | ChangeAcknowledged,
                  message: dict[str, Any] | None) -> bytes:
    """The answer to a change: durable (or nothing to change: change_seq null). ``message``, the
    message as it is now, is an addition to PROTOCOL.md (the HTTP calls answer with it)."""
    frame: dict[str, Any] = {"type": "changed", "id": event.change_id, "conversation_id": event.conversation_id,
                             "seq": event.seq, "change_seq": event.change_seq}
    if message is not None:
        frame["message"] = message
    return encode(frame)


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
