"""Conversation projection in Redis: metadata, members, and each user's conversations.

Keys (all idempotent to re-apply):
- ``conv:{id}``            JSON of the conversation without members
- ``conv:{id}:members``    hash user id -> role
- ``conv:{id}:last``       hash seq, message (JSON): the newest message, moved only forward
- ``user:{id}:convs``      set of the user's conversation ids
"""

from __future__ import annotations

from typing import Any, Iterable

import orjson
import redis.asyncio as redis

from chat.events import ConversationCreated, Event, MessageAccepted
from chat.frames import conversation_object, message_object

# Moves conv:{id}:last forward only, so replaying old events changes nothing.
_SET_LAST = """
local cur = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
if tonumber(ARGV[1]) > cur then
  redis.call('HSET', KEYS[1], 'seq', ARGV[1], 'message', ARGV[2])
  return 1
end
return 0
"""


def _meta_key(cid: str) -> str:
    return f"conv:{cid}"


def _members_key(cid: str) -> str:
    return f"conv:{cid}:members"


def _last_key(cid: str) -> str:
    return f"conv:{cid}:last"


def _user_key(uid: str) -> str:
    return f"user:{uid}:convs"


class ConversationProjection:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._set_last = client.register_script(_SET_LAST)

    async def apply(self, events: Iterable[Event]) -> None:
        """Write a batch of events in one pipeline."""
        pipe = self.redis.pipeline(transaction=False)
        touched = False
        for event in events:
            if isinstance(event, ConversationCreated):
                touched = True
                obj = conversation_object(event)
                members = obj.pop("members")
                pipe.set(_meta_key(event.conversation_id), orjson.dumps(obj), nx=True)
                pipe.hset(_members_key(event.conversation_id),
                          mapping={m["user_id"]: m["role"] for m in members})
                for m in members:
                    pipe.sadd(_user_key(m["user_id"]), event.conversation_id)
            elif isinstance(event, MessageAccepted):
                touched = True
                await self._set_last(keys=[_last_key(event.conversation_id)],
                                     args=[event.seq, orjson.dumps(message_object(event))], client=pipe)
        if touched:
            await pipe.execute()

    async def members(self, conversation_id: str) -> dict[str, str]:
        raw = await self.redis.hgetall(_members_key(conversation_id))
        return {k.decode(): v.decode() for k, v in raw.items()}

    async def role(self, conversation_id: str, user_id: str) -> str | None:
        role = await self.redis.hget(_members_key(conversation_id), user_id)
        return role.decode() if role is not None else None

    async def get(self, conversation_id: str) -> dict[str, Any] | None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(_meta_key(conversation_id))
        pipe.hgetall(_members_key(conversation_id))
        meta, members = await pipe.execute()
        if meta is None:
            return None
        obj = orjson.loads(meta)
        obj["members"] = [{"user_id": u.decode(), "role": r.decode()} for u, r in members.items()]
        obj["members"].sort(key=lambda m: (m["role"] != "admin", m["user_id"]))
        return obj

    async def conversation_ids(self, user_id: str) -> list[str]:
        return sorted(c.decode() for c in await self.redis.smembers(_user_key(user_id)))

    async def last(self, conversation_id: str) -> tuple[int, dict[str, Any] | None]:
        raw = await self.redis.hgetall(_last_key(conversation_id))
        if not raw:
            return 0, None
        return int(raw[b"seq"]), orjson.loads(raw[b"message"])
