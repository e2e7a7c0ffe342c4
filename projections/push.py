"""Push projection: device registrations, conversation privacy, and which offline devices get
a notification for each accepted message.

Keys:
- ``push:devices:{user}``   hash device id -> JSON ``{"platform", "push_token", "registered_at"}``
- ``push:private:{conv}``   "1" / "0": whether pushes of the conversation may carry its content
  (absent: ``CHAT_PUSH_PRIVATE_DEFAULT``, true: no content leaves the server by default)

``PushPlanner.plan`` runs in the projector right after delivery, so "offline" means what the
delivery just saw: a registered device of a member (the sender's own devices excepted) with no
live entry in the connection registry. It is pure apart from its reads; the push sender
(``push/sender.py``) makes sure each (message, device) is notified once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Awaitable, Callable, Iterable, Sequence

import orjson
import redis.asyncio as redis

from chat import keys
from chat.redis_pool import hgetall_many
from chat.events import Event, MessageAccepted, PushRequested
from projections.connections import ConnectionRegistry
from projections.conversations import ConversationProjection
from streams.model import is_muted

PLATFORMS = ("fcm", "apns", "webpush", "webhook")
PREVIEW_CHARS = 200
PRIVATE_TITLE = "New message"


@dataclass(frozen=True, slots=True)
class Registration:
    platform: str
    push_token: str


_devices, _private = keys.push_devices, keys.push_private

# KEYS[1]: the user's devices. ARGV: device id, registration, most devices. 1: stored, 0: full.
_REGISTER = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 or redis.call('HLEN', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return 1
end
return 0
"""


class DeviceRegistry:
    def __init__(self, client: redis.Redis, private_default: bool = True) -> None:
        self.redis = client
        self.private_default = private_default

    async def register(self, user_id: str, device_id: str, platform: str, push_token: str,
                       max_devices: int | None = None) -> bool:
        """Store (or replace) a device's registration. With ``max_devices``, a new device is
        refused (False) when the user already has that many; a known one is always replaced.
        One script, so concurrent registrations cannot pass the cap together."""
        value = orjson.dumps({"platform": platform, "push_token": push_token,
                              "registered_at": int(time.time() * 1000)})
        if max_devices is None:
            await self.redis.hset(_devices(user_id), device_id, value)
            return True
        return bool(await self.redis.eval(_REGISTER, 1, _devices(user_id), device_id, value, max_devices))

    async def unregister(self, user_id: str, device_id: str) -> None:
        await self.redis.hdel(_devices(user_id), device_id)

    async def forget(self, user_id: str, device_id: str, push_token: str) -> bool:
        """Unregister a device whose token its provider rejected for good, if it still has that token."""
        raw = await self.redis.hget(_devices(user_id), device_id)
        if raw is None or orjson.loads(raw)["push_token"] != push_token:
            return False
        return bool(await self.redis.hdel(_devices(user_id), device_id))

    async def of(self, user_ids: Iterable[str]) -> dict[str, dict[str, Registration]]:
        users = list(user_ids)
        result: dict[str, dict[str, Registration]] = {}
        for user_id, raw in zip(users, await hgetall_many(self.redis, [_devices(u) for u in users], sparse=True)):
            regs = {d.decode(): orjson.loads(v) for d, v in raw.items()}
            result[user_id] = {d: Registration(r["platform"], r["push_token"]) for d, r in regs.items()}
        return result

    async def set_private(self, conversation_id: str, private: bool) -> None:
        await self.redis.set(_private(conversation_id), "1" if private else "0")

    async def private(self, conversation_ids: Sequence[str]) -> dict[str, bool]:
        if not conversation_ids:
            return {}
        values = await self.redis.mget([_private(c) for c in conversation_ids])
        return {c: self.private_default if v is None else v == b"1" for c, v in zip(conversation_ids, values)}


def notification(m: MessageAccepted, user_id: str, device_id: str, reg: Registration,
                 conversation_name: str, private: bool) -> PushRequested:
    """The push for one message to one device. Private: no body, no names, only ids; the app
    fetches the message over its own authenticated connection. One collapse key per conversation."""
    title = PRIVATE_TITLE if private else f"{m.sender_id} in {conversation_name}" if conversation_name else m.sender_id
    # The body itself never goes on the push topic: the sender reads it when it sends
    # (``preview_text``), so a deletion before then erases it from the push too.
    return PushRequested(conversation_id=m.conversation_id, seq=m.seq, message_id=m.message_id,
                         sender_id=m.sender_id, user_id=user_id, device_id=device_id, platform=reg.platform,
                         push_token=reg.push_token, collapse_key=m.conversation_id, title=title, body=None,
                         sent_at=m.sent_at, attempt=0, preview=not private)


def preview_text(body: str, media_type: str | None) -> str:
    """What a push shows of a message: its body cut at PREVIEW_CHARS, or "[image]" and the like."""
    text = body if len(body) <= PREVIEW_CHARS else body[:PREVIEW_CHARS] + "…"
    if not text and media_type:
        text = f"[{media_type.split('/')[0]}]"
    return text


def silenced(m: MessageAccepted, user_id: str, muted_until: int | None) -> bool:
    """A member who muted the conversation gets no push for a message, unless it mentions them.
    (``mentions`` comes with MessageAccepted v2: read with getattr, so either shape works.)"""
    return is_muted(muted_until, m.sent_at) and user_id not in (getattr(m, "mentions", None) or ())


class PushPlanner:
    def __init__(self, conversations: ConversationProjection, connections: ConnectionRegistry,
                 devices: DeviceRegistry,
                 members_of: Callable[[str], Awaitable[Iterable[str]]] | None = None,
                 mutes: Callable[[Sequence[str]], Awaitable[dict[str, dict[str, int]]]] | None = None) -> None:
        self.conversations = conversations
        self.connections = connections
        self.devices = devices
        # The worker passes its delivery router's member cache: a Redis round trip per
        # conversation and batch was the projector's slowest step.
        self.members_of = members_of or conversations.members
        # conversation -> user -> muted_until (projections.social); None: nobody is ever muted.
        self.mutes = mutes

    async def plan(self, events: Iterable[Event], seen: dict[str, dict[str, str]] | None = None) -> list[PushRequested]:
        """The pushes of a batch. ``seen``: the connections the delivery of this batch read
        (user -> {device: gateway}); users not in it are read here."""
        messages = [e for e in events if isinstance(e, MessageAccepted)]
        if not messages:
            return []
        members = {cid: set(await self.members_of(cid)) for cid in {m.conversation_id for m in messages}}
        registered = {u: d for u, d in (await self.devices.of(set().union(*members.values()))).items() if d}
        if not registered:
            return []
        seen = seen or {}
        live = {u: seen[u] for u in registered if u in seen}
        live.update(await self.connections.gateways([u for u in registered if u not in seen]))
        cids = sorted({m.conversation_id for m in messages if members[m.conversation_id] & registered.keys()})
        private = await self.devices.private(cids)
        names = {cid: ((await self.conversations.get(cid)) or {}).get("name", "") for cid in cids}
        mutes = await self.mutes(cids) if self.mutes is not None else {}
        jobs = []
        for m in messages:
            for user_id in sorted(members[m.conversation_id] & registered.keys() - {m.sender_id}):
                if silenced(m, user_id, mutes.get(m.conversation_id, {}).get(user_id)):
                    continue
                for device_id, reg in sorted(registered[user_id].items()):
                    if device_id not in live.get(user_id, {}):
                        jobs.append(notification(m, user_id, device_id, reg, names[m.conversation_id],
                                                 private[m.conversation_id]))
        return jobs
