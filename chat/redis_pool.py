"""The one way processes open Redis: a blocking pool of bounded size.

redis-py's default pool holds 100 connections and *raises* ``MaxConnectionsError`` when a
burst wants more (seen as HTTP 500s when a thousand devices connected at once); a blocking
pool makes the burst wait its turn instead, up to ``redis_wait_s``.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable, Sequence

import redis.asyncio as redis
from redis.exceptions import NoScriptError

from chat.secure import redis_options
from chat.settings import Settings


def connect(settings: Settings) -> redis.Redis:
    pool = redis.BlockingConnectionPool.from_url(settings.redis_url, max_connections=settings.redis_max_connections,
                                                 timeout=settings.redis_wait_s, **redis_options(settings))
    return redis.Redis(connection_pool=pool)


class Script:
    """A Lua script run with EVALSHA, on its own or queued on a pipeline.

    redis-py's registered scripts make every pipeline that holds one ask ``SCRIPT EXISTS``
    first: a second round trip per pipeline, on the hottest paths (each send, each projected
    batch). Here a pipeline sends EVALSHA alone (``queue``) and ``run_pipeline`` loads the script
    and builds and runs the pipeline again when Redis answers NOSCRIPT (a restarted Redis has
    lost its script cache): whatever a pipeline with a script holds must be safe to run twice.
    """

    def __init__(self, client: redis.Redis, source: str) -> None:
        self.client = client
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()
        self._direct = client.register_script(source)  # EVALSHA, then EVAL on NOSCRIPT

    async def __call__(self, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        return await self._direct(keys=keys, args=args)

    def queue(self, pipe: Any, keys: Sequence[Any], args: Sequence[Any]) -> None:
        pipe.evalsha(self.sha, len(keys), *keys, *args)

    async def load(self) -> None:
        await self.client.script_load(self.source)


async def run_pipeline(client: redis.Redis, build: Callable[[Any], Any], *scripts: Script) -> list[Any]:
    """Queue commands with ``build(pipe)`` on a pipeline (no transaction) and execute it; when a
    script was missing, load ``scripts`` and do it all once more."""
    for attempt in (1, 2):
        pipe = client.pipeline(transaction=False)
        build(pipe)
        try:
            return await pipe.execute()
        except NoScriptError:
            if attempt == 2:
                raise
            for script in scripts:
                await script.load()
    raise AssertionError("unreachable")
