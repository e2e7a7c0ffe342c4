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
from chat.redis_pool import Script, hgetall_many, run_pipeline

_key = keys.connections


# KEYS[1] conn:{user}; ARGV[1] device id, ARGV[2] gateway id: delete the entry if that gateway holds it.
UNREGISTER = """
local entry = redis.call('HGET', KEYS[1], ARGV[1])
if entry and string.sub(entry, 1, #ARGV[2] + 1) == ARGV[2] .. '|' then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"""


# KEYS[1] conn:{user}; ARGV[1] gateway id, ARGV[2] the entry's new value, ARGV[3] the key's TTL
# in ms, ARGV[4..] device ids: renew each device's entry this gateway holds; return the others.
REFRESH = """
local mine, lost, kept = ARGV[1] .. '|', {}, 0
for i = 4, #ARGV do
  local entry = redis.call('HGET', KEYS[1], ARGV[i])
  if entry and string.sub(entry, 1, #mine) == mine then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[2])
    kept = kept + 1
  else
    lost[#lost + 1] = ARGV[i]
  end
end
if kept > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return lost
"""


def _now_ms() -> int:
    return int(time.time() * 1000)


class ConnectionRegistry:
    def __init__(self, client: redis.Redis, ttl_s: float) -> None:
        self.redis = client
        self.ttl_ms = int(ttl_s * 1000)
        self._unregister = Script(client, UNREGISTER)
        self._refresh = Script(client, REFRESH)

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

    async def refresh(self, devices: dict[str, list[str]], gateway_id: str) -> list[tuple[str, str]]:
        """Renew the entries of ``devices`` (user id -> device ids) this gateway holds, one script
        per user on one pipeline; returns the ``(user_id, device_id)`` whose entry is gone or
        another gateway's. Such an entry is never written back: a renewal that reached Redis
        late (held up by a failover) must not take a device back from the gateway it moved to."""
        if not devices:
            return []
        expires = f"{gateway_id}|{_now_ms() + self.ttl_ms}"
        users = list(devices)
        replies = await run_pipeline(self.redis, lambda pipe: [
            self._refresh.queue(pipe, [_key(u)], [gateway_id, expires, self.ttl_ms, *devices[u]]) for u in users],
            self._refresh)
        return [(u, d.decode() if isinstance(d, bytes) else d) for u, lost in zip(users, replies) for d in lost]

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
        hashes = await hgetall_many(self.redis, [_key(u) for u in users])
        now = _now_ms()
        result: dict[str, dict[str, str]] = {}
        names: dict[bytes, str] = {}  # gateway ids, decoded once (a few gateways, many users)
        for user_id, raw in zip(users, hashes):
            live = {}
            for device, value in raw.items():
                gateway, _, expires = value.rpartition(b"|")
                if int(expires) > now:
                    name = names.get(gateway)
                    if name is None:
                        name = names[gateway] = gateway.decode()
                    live[device.decode()] = name
            result[user_id] = live
        return result
