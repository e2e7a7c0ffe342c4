"""Connection registry in Redis: which gateway holds each device of a user.

``conn:{user}`` is a hash device id -> ``"<gateway_id>|<expires_at_ms>"``. A gateway
refreshes its entries on a heartbeat; entries of a gateway that died without a goodbye
are skipped once expired and removed when next seen, and the key itself expires.
"""

from __future__ import annotations

import time
from typing import Iterable

import redis.asyncio as redis

from chat import keys
from chat.redis_pool import Script

_key = keys.connections


# KEYS[1] conn:{user}; ARGV[1] device id, ARGV[2] gateway id: delete the entry if that gateway holds it.
UNREGISTER = """
local entry = redis.call('HGET', KEYS[1], ARGV[1])
if entry and string.sub(entry, 1, #ARGV[2] + 1) == ARGV[2] .. '|' then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"""


def _now_ms() -> int:
    return int(time.time() * 1000)


class ConnectionRegistry:
    def __init__(self, client: redis.Redis, ttl_s: float) -> None:
        self.redis = client
        self.ttl_ms = int(ttl_s * 1000)
        self._unregister = Script(client, UNREGISTER)

    async def register(self, entries: Iterable[tuple[str, str]], gateway_id: str) -> None:
        """Add or refresh ``(user_id, device_id)`` entries held by this gateway."""
        expires = _now_ms() + self.ttl_ms
        pipe = self.redis.pipeline(transaction=False)
        count = 0
        for user_id, device_id in entries:
            pipe.hset(_key(user_id), device_id, f"{gateway_id}|{expires}")
            pipe.pexpire(_key(user_id), self.ttl_ms)
            count += 1
        if count:
            await pipe.execute()

    async def unregister(self, user_id: str, device_id: str, gateway_id: str) -> None:
        """Remove a device's entry if this gateway still holds it (it may have moved). One
        script, so a newer gateway's entry written between a read and a delete is never removed
        (it was: reconnects delayed by a Redis failover landed there, and the device got no
        live frames until that gateway's next heartbeat)."""
        await self._unregister([_key(user_id)], [device_id, gateway_id])

    async def gateways(self, user_ids: Iterable[str]) -> dict[str, dict[str, str]]:
        """user id -> {device id: gateway id}, live entries only, in one round trip."""
        users = list(user_ids)
        if not users:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        for u in users:
            pipe.hgetall(_key(u))
        now = _now_ms()
        result: dict[str, dict[str, str]] = {}
        for user_id, raw in zip(users, await pipe.execute()):
            live = {}
            for device, value in raw.items():
                gateway, _, expires = value.decode().rpartition("|")
                if int(expires) > now:
                    live[device.decode()] = gateway
            result[user_id] = live
        return result
