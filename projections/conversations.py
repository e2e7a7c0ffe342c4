"""Conversation projection in Redis: metadata, members, former members, each user's conversations.

Keys:
- ``conv:{id}``            hash: conversation_id, type, name, description, created_at, last_change_seq
- ``conv:{id}:members``    hash user id -> role
- ``conv:{id}:former``     hash user id -> the last seq a removed member may still read
- ``conv:{id}:last``       hash seq, message (JSON): the newest message as sent, moved only forward
                           (the list shows it as the timeline holds it now: edited, deleted)
- ``user:{id}:convs``      set of the user's conversation ids (current memberships)
- ``user:{id}:former``     hash conversation id -> the last seq they may read, for conversations they left

A conversation's events all live in one partition and reach this projection in log order;
after a crash they are applied again from the last committed offset, in the same order, so
plain writes converge to the same state (the ``last`` message only moves forward anyway).
"""

from __future__ import annotations

from typing import Any, Iterable

import orjson
import redis.asyncio as redis

from chat import keys
from chat.events import (
    ConversationCreated, ConversationUpdated, Event, MemberRemoved, MembersAdded, MessageAccepted, MessageDeleted,
    MessageEdited, ReactionChanged,
)
from chat.frames import message_object
from chat.redis_pool import Script, run_pipeline

# Moves conv:{id}:last forward only, so replaying old events changes nothing.
_SET_LAST = """
local cur = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
if tonumber(ARGV[1]) > cur then
  redis.call('HSET', KEYS[1], 'seq', ARGV[1], 'message', ARGV[2])
  return 1
end
return 0
"""

# The keys this projection owns (``chat rebuild conversations`` replaces exactly these).
OWNED_KEYS = keys.owned("conv:{id}", "conv:{id}:members", "conv:{id}:former", "conv:{id}:last",
                        "user:{id}:convs", "user:{id}:former")
SCAN_PATTERNS = ("conv:{*", "user:{*}:convs", "user:{*}:former")


_meta, _members, _former = keys.conversation, keys.conversation_members, keys.conversation_former
_last, _user = keys.conversation_last, keys.user_conversations


def _text(value: bytes | None) -> str | None:
    return value.decode() if value is not None else None


_CHANGES = (MessageEdited, MessageDeleted, ReactionChanged)
_PROJECTED = (MessageAccepted, ConversationCreated, ConversationUpdated, MembersAdded, MemberRemoved, *_CHANGES)


class ConversationProjection:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._set_last = Script(client, _SET_LAST)

    async def apply(self, events: Iterable[Event]) -> None:
        """Write a batch of events in one pipeline (safe to write twice)."""
        relevant = [e for e in events if isinstance(e, _PROJECTED)]

        def build(pipe: Any) -> None:
            for event in relevant:
                if isinstance(event, MessageAccepted):
                    self._set_last.queue(pipe, [_last(event.conversation_id)],
                                         [event.seq, orjson.dumps(message_object(event))])
                elif isinstance(event, _CHANGES):  # in log order: the counter ends at the newest
                    pipe.hset(_meta(event.conversation_id), "last_change_seq", event.change_seq)
                else:
                    self._membership(pipe, event)

        if relevant:
            await run_pipeline(self.redis, build, self._set_last)

    @staticmethod
    def _membership(pipe: Any, event: Event) -> None:
        """Queue the writes of a membership event (one of ``_PROJECTED`` other than a message)."""
        if isinstance(event, ConversationCreated):
            cid = event.conversation_id
            pipe.hset(_meta(cid), mapping={"conversation_id": cid, "type": event.kind, "name": event.name,
                                           "description": event.description, "created_at": event.created_at})
            pipe.hset(_members(cid), mapping={m.user_id: m.role for m in event.members})
            for m in event.members:
                pipe.sadd(_user(m.user_id), cid)
        elif isinstance(event, ConversationUpdated):
            changes = {k: v for k, v in (("name", event.name), ("description", event.description)) if v is not None}
            pipe.hset(_meta(event.conversation_id), mapping=changes)
        elif isinstance(event, MembersAdded):
            cid = event.conversation_id
            pipe.hset(_members(cid), mapping={m.user_id: m.role for m in event.members})
            pipe.hdel(_former(cid), *[m.user_id for m in event.members])
            for m in event.members:
                pipe.sadd(_user(m.user_id), cid)
                pipe.hdel(keys.user_former(m.user_id), cid)
        elif isinstance(event, MemberRemoved):
            cid = event.conversation_id
            pipe.hdel(_members(cid), event.member_id)
            pipe.hset(_former(cid), event.member_id, event.at_seq)
            pipe.srem(_user(event.member_id), cid)
            pipe.hset(keys.user_former(event.member_id), cid, event.at_seq)
            if event.promoted is not None:
                pipe.hset(_members(cid), event.promoted, "admin")

    async def members(self, conversation_id: str) -> dict[str, str]:
        raw = await self.redis.hgetall(_members(conversation_id))
        return {k.decode(): v.decode() for k, v in raw.items()}

    async def role(self, conversation_id: str, user_id: str) -> str | None:
        return _text(await self.redis.hget(_members(conversation_id), user_id))

    @staticmethod
    def role_in(pipe: Any, conversation_id: str, user_id: str) -> None:
        """``role`` queued on a pipeline; its reply is the role's bytes or None."""
        pipe.hget(_members(conversation_id), user_id)

    async def access(self, conversation_id: str, user_id: str) -> tuple[str | None, int | None]:
        """(role if a member, else None; the last readable seq if a former member, else None)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hget(_members(conversation_id), user_id)
        pipe.hget(_former(conversation_id), user_id)
        role, former = await pipe.execute()
        return _text(role), int(former) if former is not None else None

    async def get(self, conversation_id: str) -> dict[str, Any] | None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(_meta(conversation_id))
        pipe.hgetall(_members(conversation_id))
        meta, members = await pipe.execute()
        if not meta:
            return None
        fields = {k.decode(): v.decode() for k, v in meta.items()}
        listed = [{"user_id": u.decode(), "role": r.decode()} for u, r in members.items()]
        listed.sort(key=lambda m: (m["role"] != "admin", m["user_id"]))
        return {"conversation_id": fields["conversation_id"], "type": fields["type"], "name": fields["name"],
                "description": fields["description"], "members": listed,
                "created_at": int(fields["created_at"]), "last_change_seq": int(fields.get("last_change_seq", 0))}

    async def former(self, user_id: str) -> dict[str, int]:
        """The conversations a user left (or was removed from): the last seq they may read in each."""
        return {c.decode(): int(s) for c, s in (await self.redis.hgetall(keys.user_former(user_id))).items()}

    async def conversation_ids(self, user_id: str) -> list[str]:
        return sorted(c.decode() for c in await self.redis.smembers(_user(user_id)))

    async def contacts(self, user_ids: Iterable[str]) -> dict[str, set[str]]:
        """user -> everyone sharing a conversation with them (themselves excluded), in two round trips."""
        users = list(user_ids)
        pipe = self.redis.pipeline(transaction=False)
        for user_id in users:
            pipe.smembers(_user(user_id))
        convs = {u: [c.decode() for c in cs] for u, cs in zip(users, await pipe.execute())}
        every = sorted({c for cs in convs.values() for c in cs})
        for cid in every:
            pipe.hkeys(_members(cid))
        members = {cid: {m.decode() for m in ms} for cid, ms in zip(every, await pipe.execute())}
        return {u: set().union(*(members[c] for c in cs)) - {u} for u, cs in convs.items()}

    async def sharing(self, user_id: str, others: list[str]) -> set[str]:
        """Those of ``others`` who share a conversation with ``user_id`` (themselves included)."""
        pipe = self.redis.pipeline(transaction=False)
        for other in others:
            pipe.sintercard(2, [_user(user_id), _user(other)], limit=1)
        shared = await pipe.execute()
        return {o for o, n in zip(others, shared) if n or o == user_id}

    async def last(self, conversation_id: str) -> tuple[int, dict[str, Any] | None]:
        raw = await self.redis.hgetall(_last(conversation_id))
        if not raw:
            return 0, None
        return int(raw[b"seq"]), orjson.loads(raw[b"message"])
