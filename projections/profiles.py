"""Profile projection in Redis, and the ``profile`` frames of each change.

Keys (``chat.keys``):
- ``profile:{user}``  hash: display_name, avatar_media_id (each absent until set)

``ProfileUpdated`` events are keyed by user id on the profiles topic, so a user's changes reach
the projection in log order; each writes only the fields it changed, so applying the log again
gives the same hash. A user who never set a profile reads with ``display_name`` = their id and
``avatar_url`` null.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import redis.asyncio as redis

from chat import frames, keys
from chat.events import Event, ProfileUpdated
from media.urls import media_url
from projections.connections import ConnectionRegistry
from projections.conversations import ConversationProjection
from projections.delivery import Routed, _reply, fan_out

OWNED_KEYS = keys.owned("profile:{id}")
SCAN_PATTERNS = ("profile:{*}",)


def profile_object(user_id: str, display_name: str | None, avatar_media_id: str | None) -> dict[str, Any]:
    return {"user_id": user_id, "display_name": display_name or user_id,
            "avatar_url": media_url(avatar_media_id) if avatar_media_id else None}


def _text(value: bytes | None) -> str | None:
    return value.decode() if value is not None else None


class ProfileProjection:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    async def apply(self, events: Iterable[Event]) -> list[ProfileUpdated]:
        """Project a batch of ``ProfileUpdated`` (others are ignored) in one pipeline."""
        updates = [e for e in events if isinstance(e, ProfileUpdated)]
        if not updates:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for event in updates:
            key = keys.profile(event.user_id)
            if event.display_name is not None:
                pipe.hset(key, "display_name", event.display_name)
            if event.avatar_set and event.avatar_media_id:
                pipe.hset(key, "avatar_media_id", event.avatar_media_id)
            elif event.avatar_set:
                pipe.hdel(key, "avatar_media_id")
        await pipe.execute()
        return updates

    async def read(self, user_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """user -> profile object, for every user asked (never set: the defaults)."""
        pipe = self.redis.pipeline(transaction=False)
        for user_id in user_ids:
            pipe.hmget(keys.profile(user_id), "display_name", "avatar_media_id")
        found = await pipe.execute() if user_ids else []
        return {u: profile_object(u, _text(name), _text(avatar)) for u, (name, avatar) in zip(user_ids, found)}

    async def avatar(self, user_id: str) -> str | None:
        return _text(await self.redis.hget(keys.profile(user_id), "avatar_media_id"))


def profile_frame(profile: dict[str, Any]) -> bytes:
    return frames.encode({"type": "profile", "profile": profile})


class ProfileRouter:
    """A ``profile`` frame to every device of everyone who shares a conversation with the user,
    the user's own devices too; and the profile as the answer to the request that changed it."""

    def __init__(self, profiles: ProfileProjection, conversations: ConversationProjection,
                 connections: ConnectionRegistry) -> None:
        self.profiles = profiles
        self.conversations = conversations
        self.connections = connections

    async def route(self, updates: Sequence[ProfileUpdated]) -> list[Routed]:
        if not updates:
            return []
        users = sorted({e.user_id for e in updates})
        contacts = await self.conversations.contacts(users)
        audience = {u: contacts[u] | {u} for u in users}
        connections = await self.connections.gateways(set().union(*audience.values()))
        current = await self.profiles.read(users)  # as projected after the batch
        routed: list[Routed] = []
        for event in updates:
            frame = profile_frame(current[event.user_id])
            routed += _reply(event.origin, event.user_id, frame, 200)
        for user_id in users:
            routed += fan_out(profile_frame(current[user_id]), sorted(audience[user_id]), connections)
        return routed
