"""Blocks, mutes and mentions in Redis, and the frames their events make.

Keys (``chat.keys``):
- ``block:{user}``            set: the users ``user`` blocked (``GET /v1/users/me/blocked``, presence,
  typing, the gateway's direct-create shortcut)
- ``mute:{conv}``             hash user -> muted_until (ms, or -1 until unmuted); absent: not muted
- ``mentions:{conv}:{user}``  sorted set of the seqs of messages that mention the user (score = seq):
  ``unread_mentions`` counts those past the user's read mark; those up to it are removed when
  the mark moves (a read receipt, or the user's own message)

Every write is a set operation or a plain overwrite applied in log order (a conversation's events
share a partition), so an event applied twice changes nothing. The sequencer enforces blocks from
its own state (``streams.model.blocked_in``); these keys serve reads, and the rules the gateway and
the presence fan-out keep.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import redis.asyncio as redis

from chat import frames, keys
from chat.events import BlockChanged, Event, MessageAccepted, MessageDeleted, MuteChanged, ReceiptRecorded
from projections.connections import ConnectionRegistry
from projections.conversations import ConversationProjection
from projections.delivery import Routed, _reply, fan_out
from projections.presence import PresenceProjection
from streams.model import is_muted

OWNED_KEYS = keys.owned("block:{id}", "mute:{id}", "mentions:{id}:{id}")
SCAN_PATTERNS = ("block:{*}", "mute:{*}", "mentions:{*}")
HIDDEN = {"status": "offline", "last_seen": None}  # how a blocker reads to the one they blocked


def mentioned(event: MessageAccepted) -> list[str]:
    """Who a message mentions, the sender aside. ``mentions`` arrives with MessageAccepted v2; read
    with getattr so this works with events of either shape."""
    return [u for u in dict.fromkeys(getattr(event, "mentions", None) or ()) if u != event.sender_id]


def muted_value(raw: Any, now_ms: int) -> int | None:
    """``muted_until`` as the protocol shows it: null when not muted or when it is past."""
    if raw is None:
        return None
    value = int(raw)
    return value if is_muted(value, now_ms) else None


class SocialProjection:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    async def apply(self, events: Iterable[Event]) -> None:
        """Project a batch's blocks, mutes and mentions in one pipeline (safe to apply twice)."""
        pipe = self.redis.pipeline(transaction=False)
        touched = False
        for event in events:
            if isinstance(event, BlockChanged):
                key = keys.blocked(event.user_id)
                (pipe.sadd if event.blocked else pipe.srem)(key, event.blocked_id)
            elif isinstance(event, MuteChanged):
                key = keys.muted(event.conversation_id)
                if event.muted_until is None:
                    pipe.hdel(key, event.user_id)
                else:
                    pipe.hset(key, event.user_id, event.muted_until)
            elif isinstance(event, MessageAccepted):
                for user_id in mentioned(event):
                    pipe.zadd(keys.mentions(event.conversation_id, user_id), {str(event.seq): event.seq})
                # Sending reads everything before: what the sender was mentioned in is read.
                pipe.zremrangebyscore(keys.mentions(event.conversation_id, event.sender_id), "-inf", event.seq)
            elif isinstance(event, MessageDeleted):
                # A deleted message no longer counts in anyone's unread mentions.
                for user_id in event.mentions:
                    pipe.zrem(keys.mentions(event.conversation_id, user_id), str(event.seq))
            elif isinstance(event, ReceiptRecorded) and event.status == "read":
                # Read mentions are never counted again: forgotten, so the sets stay small.
                pipe.zremrangebyscore(keys.mentions(event.conversation_id, event.user_id), "-inf", event.seq)
            else:
                continue
            touched = True
        if touched:
            await pipe.execute()

    # Blocks

    async def blocked_by(self, user_id: str) -> list[str]:
        return sorted(u.decode() for u in await self.redis.smembers(keys.blocked(user_id)))

    async def hidden_from(self, user_ids: Sequence[str]) -> dict[str, set[str]]:
        """user -> the users they blocked (to whom their presence is hidden)."""
        pipe = self.redis.pipeline(transaction=False)
        for user_id in user_ids:
            pipe.smembers(keys.blocked(user_id))
        found = await pipe.execute() if user_ids else []
        return {u: {b.decode() for b in bs} for u, bs in zip(user_ids, found)}

    async def blockers_of(self, user_id: str, others: Sequence[str]) -> set[str]:
        """Those of ``others`` who blocked ``user_id``."""
        if not others:
            return set()
        pipe = self.redis.pipeline(transaction=False)
        for other in others:
            pipe.sismember(keys.blocked(other), user_id)
        return {o for o, hit in zip(others, await pipe.execute()) if hit}

    # Mutes and mentions

    async def mutes(self, conversation_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """conversation -> user -> muted_until as stored (-1 or ms; past ones included)."""
        pipe = self.redis.pipeline(transaction=False)
        for cid in conversation_ids:
            pipe.hgetall(keys.muted(cid))
        found = await pipe.execute() if conversation_ids else []
        return {c: {u.decode(): int(v) for u, v in raw.items()} for c, raw in zip(conversation_ids, found)}

    async def list_fields(self, user_id: str, read_seqs: dict[str, int], now_ms: int) -> dict[str, dict[str, Any]]:
        """The conversation list's additions per conversation: ``muted_until`` and
        ``unread_mentions`` (messages after the read mark that mention the user), one round trip."""
        cids = list(read_seqs)
        pipe = self.redis.pipeline(transaction=False)
        for cid in cids:
            pipe.hget(keys.muted(cid), user_id)
            pipe.zcount(keys.mentions(cid, user_id), f"({read_seqs[cid]}", "+inf")
        raw = await pipe.execute() if cids else []
        return {cid: {"muted_until": muted_value(raw[2 * i], now_ms), "unread_mentions": int(raw[2 * i + 1])}
                for i, cid in enumerate(cids)}


def block_frame(event: BlockChanged) -> bytes:
    """The answer to a block request (an addition: ``{"type":"blocked","user_id","blocked"}``)."""
    return frames.encode({"type": "blocked", "user_id": event.blocked_id, "blocked": event.blocked})


def settings_frame(conversation_id: str, muted_until: int | None) -> bytes:
    """A member's settings of a conversation (an addition), to all of their devices."""
    return frames.encode({"type": "settings", "conversation_id": conversation_id, "muted_until": muted_until})


def presence_frame(user_id: str, shown: dict[str, Any]) -> bytes:
    return frames.encode({"type": "presence", "user_id": user_id, **shown})


class SocialRouter:
    """Frames for block and mute events: the answer to the request; if the two share a
    conversation, on a block the blocker goes offline (last_seen null) on the blocked user's
    devices, and on an unblock back to what they are; a mute's settings go to all of the member's
    devices."""

    def __init__(self, conversations: ConversationProjection, connections: ConnectionRegistry,
                 presence: PresenceProjection) -> None:
        self.conversations = conversations
        self.connections = connections
        self.presence = presence

    async def route(self, events: Sequence[Event], now_ms: int) -> list[Routed]:
        relevant = [e for e in events if isinstance(e, (BlockChanged, MuteChanged))]
        if not relevant:
            return []
        users = {e.blocked_id if isinstance(e, BlockChanged) else e.user_id for e in relevant}
        connections = await self.connections.gateways(users)
        routed: list[Routed] = []
        for event in relevant:
            if isinstance(event, MuteChanged):
                frame = settings_frame(event.conversation_id, muted_value(event.muted_until, now_ms))
                routed += _reply(event.origin, event.user_id, frame, 200)
                routed += fan_out(frame, [event.user_id], connections)
                continue
            routed += _reply(event.origin, event.user_id, block_frame(event), 204)
            if event.blocked_id not in await self.conversations.sharing(event.user_id, [event.blocked_id]):
                continue  # presence frames only ever go to contacts
            shown: dict[str, Any] = HIDDEN
            if not event.blocked:
                shown = (await self.presence.read([event.user_id]))[event.user_id]
            routed += fan_out(presence_frame(event.user_id, shown), [event.blocked_id], connections)
        return routed
