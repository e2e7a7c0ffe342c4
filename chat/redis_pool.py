"""The one way processes open Redis: a blocking pool of bounded size.

redis-py's default pool holds 100 connections and *raises* ``MaxConnectionsError`` when a
burst wants more (seen as HTTP 500s when a thousand devices connected at once); a blocking
pool makes the burst wait its turn instead, up to ``redis_wait_s``.
"""

from __future__ import annotations

import redis.asyncio as redis

from chat.settings import Settings


def connect(settings: Settings) -> redis.Redis:
    pool = redis.BlockingConnectionPool.from_url(settings.redis_url, max_connections=settings.redis_max_connections,
                                                 timeout=settings.redis_wait_s)
    return redis.Redis(connection_pool=pool)
