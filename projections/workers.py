"""Which stream workers are alive and which partitions they serve, in Redis.

Each worker announces itself on a heartbeat: ``workers:{app_id}`` is a hash worker id ->
``"<commands partitions>;<events partitions>|<expires_at_ms>"``, listing the commands
partitions whose sequencer state is recovered and the events partitions it projects. The
gateway's ``/healthz`` is 200 only while live workers cover every partition of both topics.
"""

from __future__ import annotations

import time
from typing import Iterable

import redis.asyncio as redis

from chat import keys


def _now_ms() -> int:
    return int(time.time() * 1000)


def _parts(text: str) -> set[int]:
    return {int(p) for p in text.split(",") if p}


class WorkerRegistry:
    def __init__(self, client: redis.Redis, app_id: str, ttl_s: float) -> None:
        self.redis = client
        self.key = keys.workers(app_id)
        self.ttl_ms = int(ttl_s * 1000)

    async def announce(self, worker_id: str, commands: Iterable[int], events: Iterable[int]) -> None:
        value = (f"{','.join(map(str, sorted(commands)))};{','.join(map(str, sorted(events)))}"
                 f"|{_now_ms() + self.ttl_ms}")
        await self.redis.hset(self.key, worker_id, value)

    async def leave(self, worker_id: str) -> None:
        await self.redis.hdel(self.key, worker_id)

    async def coverage(self) -> tuple[set[int], set[int]]:
        """The commands and events partitions that live workers serve."""
        commands: set[int] = set()
        events: set[int] = set()
        now = _now_ms()
        for value in (await self.redis.hgetall(self.key)).values():
            parts, _, expires = value.decode().rpartition("|")
            if int(expires) <= now:
                continue
            served_commands, _, served_events = parts.partition(";")
            commands |= _parts(served_commands)
            events |= _parts(served_events)
        return commands, events
