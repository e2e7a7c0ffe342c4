"""Rebuilding a Redis projection in a scratch database, then switching key by key.

The projection's own class writes into the scratch database (``--scratch-db``, which must be
empty: the rebuild refuses a database with keys in it), so the live keys keep serving. The
switch copies each rebuilt key over the live one (``COPY ... DB <live> REPLACE``, atomic per
key) and deletes live keys the projection owns that the rebuild did not produce; then the
scratch keys are deleted. Which keys a projection owns is its module's ``OWNED_KEYS`` pattern.

Redis Cluster has only database 0: there, point the rebuild at a standalone Redis (documented
in the README) or rebuild during a quiet period.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as redis

from chat.errors import Conflict, Unavailable
from chat.events import Event

CHUNK = 1_000


def with_db(url: str, db: int) -> str:
    """The same Redis, another database (a ``db=`` argument would lose to the URL's path)."""
    return urlsplit(url)._replace(path=f"/{db}").geturl()


def live_db(url: str) -> int:
    return int(redis.Redis.from_url(url).connection_pool.connection_kwargs.get("db", 0) or 0)


class RedisShadowRebuild:
    """A ``projections.rebuild.RebuildTarget`` for a Redis projection class ``kind(client)``."""

    def __init__(self, name: str, url: str, scratch_db: int, kind: Callable[[Any], Any],
                 owned: re.Pattern[str], scan: Sequence[str], options: Mapping[str, Any] | None = None) -> None:
        """``options``: more ``from_url`` arguments (a secured Redis's: ``chat.secure.redis_options``)."""
        self.name, self.owned, self.scan = name, owned, scan
        self.db = live_db(url)
        if scratch_db == self.db:
            raise Conflict(f"the scratch database {scratch_db} is the live one; pass another --scratch-db")
        self.live_client = redis.Redis.from_url(url, **(options or {}))
        self.scratch = redis.Redis.from_url(with_db(url, scratch_db), **(options or {}))
        self.scratch_db = scratch_db
        self.shadow = kind(self.scratch)
        self.live = kind(self.live_client)

    async def open(self) -> None:
        try:
            used = await self.scratch.dbsize()
        except redis.RedisError as exc:
            raise Unavailable(f"Redis is unreachable: {exc}") from exc
        if used:
            raise Conflict(f"the scratch Redis database {self.scratch_db} holds {used} keys;"
                           " pass an empty one with --scratch-db")

    async def apply(self, events: Sequence[Event]) -> None:
        await self.shadow.apply(events)

    async def apply_live(self, events: Sequence[Event]) -> None:
        await self.live.apply(events)

    async def switch(self) -> int:
        rebuilt = [k async for k in self._owned(self.scratch)]
        for i in range(0, len(rebuilt), CHUNK):
            pipe = self.scratch.pipeline(transaction=False)
            for key in rebuilt[i:i + CHUNK]:
                pipe.copy(key, key, destination_db=self.db, replace=True)
            await pipe.execute()
        keep = set(rebuilt)
        stale = [k async for k in self._owned(self.live_client) if k not in keep]
        for i in range(0, len(stale), CHUNK):
            await self.live_client.delete(*stale[i:i + CHUNK])
        return len(rebuilt)

    async def size(self) -> int:
        return len([k async for k in self._owned(self.live_client)])

    async def _owned(self, client: redis.Redis) -> Any:
        for pattern in self.scan:
            async for key in client.scan_iter(match=pattern, count=1_000):
                if self.owned.fullmatch(key.decode()):
                    yield key

    async def close(self) -> None:
        try:
            mine = [k async for k in self._owned(self.scratch)]
            for i in range(0, len(mine), CHUNK):
                await self.scratch.delete(*mine[i:i + CHUNK])
        finally:
            await self.scratch.aclose()
            await self.live_client.aclose()
