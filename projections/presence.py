"""Presence projection in Redis: each user's status and ``last_seen``, and who is online now.

Keys:
- ``presence:{user}``          hash status, last_seen, changed_at: the newest ``PresenceChanged``
  (applied only if newer than what is there, so replaying the topic changes nothing).
- ``presence:{user}:lease``    the user's last connect or heartbeat (ms), expiring after the
  presence TTL (``CHAT_PRESENCE_TTL``): renewed by the presence worker on every heartbeat.
- ``presence:live:{partition}`` sorted set user -> lease expiry: whom a worker taking over the
  partition must watch, so users of a gateway that died meanwhile still go offline.

A user reads ``online`` while the status says so and the lease lives: a gateway that dies
without a goodbye stops heartbeating and its users read ``offline`` once the TTL runs out,
whether or not a worker noticed yet. The status comes from the event log (rebuildable); the
lease is live state, back within one heartbeat after a rebuild.
"""

from __future__ import annotations

from typing import Any, Iterable

import redis.asyncio as redis

from chat import keys
from chat.events import Event, PresenceChanged
from chat.redis_pool import Script, run_pipeline

# KEYS[1]: presence:{user}. ARGV: status, last_seen, changed_at. Only newer changes apply.
_APPLY = """
local cur = tonumber(redis.call('HGET', KEYS[1], 'changed_at') or '-1')
if tonumber(ARGV[3]) > cur then
  redis.call('HSET', KEYS[1], 'status', ARGV[1], 'last_seen', ARGV[2], 'changed_at', ARGV[3])
  return 1
end
return 0
"""

# The keys ``chat rebuild presence`` replaces: the statuses from the log, not the live leases
# and watch lists (a rebuilt status hash lacks ``heartbeat_at`` until the next heartbeat).
OWNED_KEYS = keys.owned("presence:{id}")
SCAN_PATTERNS = ("presence:{*}",)


_status, _lease, _live = keys.presence, keys.presence_lease, keys.presence_live


class PresenceProjection:
    def __init__(self, client: redis.Redis, ttl_s: float) -> None:
        self.redis = client
        self.ttl_ms = int(ttl_s * 1000)
        self._apply = Script(client, _APPLY)

    async def apply(self, events: Iterable[Event]) -> list[PresenceChanged]:
        """Project ``PresenceChanged`` events (others are ignored), in one pipeline; returns those
        that changed the projection (not one applied before, as after a worker's crash)."""
        changes = [e for e in events if isinstance(e, PresenceChanged)]
        if not changes:
            return []

        def build(pipe: Any) -> None:
            for event in changes:
                self._apply.queue(pipe, [_status(event.user_id)], [event.status, event.last_seen, event.changed_at])

        # Run twice only when the script was missing, and then none of it ran the first time.
        return [e for e, applied in zip(changes, await run_pipeline(self.redis, build, self._apply)) if applied]

    async def lease(self, partition: int, leases: dict[str, int], now_ms: int) -> None:
        """Users seen online now (user -> last connect or heartbeat): renew their leases."""
        if not leases:
            return
        pipe = self.redis.pipeline(transaction=False)
        for user_id, seen in leases.items():
            pipe.set(_lease(user_id), seen, px=self.ttl_ms)
            pipe.hset(_status(user_id), "heartbeat_at", seen)  # last_seen once the lease runs out
        pipe.zadd(_live(partition), {u: now_ms + self.ttl_ms for u in leases})
        await pipe.execute()

    async def release(self, partition: int, user_ids: list[str]) -> None:
        """Users who went offline: no lease, nobody to watch."""
        if not user_ids:
            return
        pipe = self.redis.pipeline(transaction=False)
        pipe.delete(*[_lease(u) for u in user_ids])
        pipe.zrem(_live(partition), *user_ids)
        await pipe.execute()

    async def watched(self, partition: int) -> dict[str, tuple[int, int]]:
        """The users a partition's owner held online: user -> (lease expiry, last seen)."""
        entries = await self.redis.zrange(_live(partition), 0, -1, withscores=True)
        if not entries:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        for user, _ in entries:
            pipe.hget(_status(user.decode()), "last_seen")
        seen = await pipe.execute()
        return {u.decode(): (int(expiry), int(s or 0)) for (u, expiry), s in zip(entries, seen)}

    async def read(self, user_ids: list[str]) -> dict[str, dict[str, object]]:
        """user -> {"status", "last_seen"} as PROTOCOL.md shows it (never seen: offline, null)."""
        pipe = self.redis.pipeline(transaction=False)
        for user_id in user_ids:
            pipe.hmget(_status(user_id), "status", "last_seen", "heartbeat_at")
            pipe.get(_lease(user_id))
        raw = await pipe.execute()
        result: dict[str, dict[str, object]] = {}
        for i, user_id in enumerate(user_ids):
            (status, last_seen, heartbeat_at), lease = raw[2 * i], raw[2 * i + 1]
            if status == b"online" and lease is not None:
                result[user_id] = {"status": "online", "last_seen": int(lease)}
            elif status is None:
                result[user_id] = {"status": "offline", "last_seen": None}
            else:  # offline, or online with the lease run out: the newest sign of life
                result[user_id] = {"status": "offline",
                                   "last_seen": max(int(last_seen or 0), int(heartbeat_at or 0))}
        return result
