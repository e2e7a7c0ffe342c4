"""The push sender: one attempt per ``PushRequested``, retries with exponential backoff off the
pipeline, a dead-letter topic for what keeps failing, and one notification per (message, device).

- **Once per (message, device):** the first attempt claims
  ``push:sent:{message}:{user}:{device}`` (``chat.keys``) with ``SET NX`` (kept
  ``CHAT_PUSH_DEDUP_TTL_S``); a job seen again (the projector replaying a batch after a crash,
  the push topic re-delivered) finds the claim and is dropped. Retries carry ``attempt > 0`` and
  come only from the retry queue. A worker dying between the claim and the provider's answer
  loses that notification: pushes are best effort, the message itself is never lost (``sync``).
- **Retries:** a retryable failure (network, 408/429/5xx) goes into a Redis sorted set scored by
  when it is due, ``backoff * 2^attempt`` (capped, with jitter). ``RetryQueue.due`` pops due jobs
  atomically (a Lua script), so with several workers each retry is taken once; the push agent's
  timer puts them back on the push topic with ``attempt + 1``. Nothing sleeps in an agent.
- **Where to:** a URL a client chose (webhook, Web Push endpoint) goes through the egress guard
  (``push/egress.py``): a refused target is a permanent failure, never contacted.
- **Dead letters:** a permanent failure (another 4xx, no provider for the platform) or the last
  attempt goes to ``<prefix>push.dead`` as ``PushFailed``. A token the provider calls gone
  (404/410) is also unregistered, unless the device registered a new one meanwhile.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from typing import Awaitable, Callable

import httpx
import redis.asyncio as redis

from chat import keys
from chat.codec import default_codec
from chat.events import Event, PushFailed, PushRequested
from chat.settings import Settings
from projections.push import DeviceRegistry, preview_text
from projections.timelines import TimelineStore
from push.egress import EgressPolicy, egress_client
from push.providers import Provider, PushError, send

log = logging.getLogger(__name__)

# KEYS[1]: the retry set. ARGV[1]: now (ms), ARGV[2]: most to take. Returns the due members.
POP_DUE_LUA = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #due > 0 then redis.call('ZREM', KEYS[1], unpack(due)) end
return due
"""

Publish = Callable[[str, Event], Awaitable[object]]


def backoff_s(settings: Settings, attempt: int) -> float:
    """The delay before retry number ``attempt + 1``: doubling from ``push_backoff_s``, capped,
    with up to 20% jitter so a provider's outage does not come back as one burst."""
    delay = min(settings.push_backoff_max_s, settings.push_backoff_s * 2 ** attempt)
    return delay * random.uniform(0.8, 1.0)


class RetryQueue:
    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.redis = client
        self.key = f"{settings.topic_prefix}push:retry"
        self._pop = client.register_script(POP_DUE_LUA)
        self.codec = default_codec()

    async def schedule(self, job: PushRequested, due_ms: int) -> None:
        await self.redis.zadd(self.key, {self.codec.encode(job, key=job.conversation_id): due_ms})

    async def due(self, now_ms: int, limit: int = 500) -> list[PushRequested]:
        return [self.codec.decode(raw).event for raw in await self._pop(keys=[self.key], args=[now_ms, limit])]


class PushSender:
    def __init__(self, settings: Settings, client: redis.Redis, providers: dict[str, Provider],
                 publish: Publish, timelines: TimelineStore | None = None) -> None:
        self.settings = settings
        self.timelines = timelines  # where a preview's body is read at send time
        self.redis = client
        self.providers = providers
        self.publish = publish
        self.retries = RetryQueue(client, settings)
        self.devices = DeviceRegistry(client, settings.push_private_default)
        self.http = httpx.AsyncClient(http2=True, timeout=settings.push_timeout_s)  # configured endpoints
        self.egress = egress_client(EgressPolicy.from_settings(settings), settings.push_timeout_s)

    async def close(self) -> None:
        await self.http.aclose()
        await self.egress.aclose()

    async def handle(self, job: PushRequested) -> str:
        """Make one attempt; returns "sent", "duplicate", "retry", "dead" or "erased" (the
        message was deleted before its push went out). Never raises."""
        out = job  # what is sent; retries keep the job without its body
        if job.preview:
            filled = await self.with_preview(job)
            if filled is None:
                return "erased"
            out = filled
        marker = keys.push_sent(job.message_id, job.user_id, job.device_id)
        if job.attempt == 0 and not await self.redis.set(marker, 1, nx=True, ex=int(self.settings.push_dedup_ttl_s)):
            return "duplicate"
        try:
            provider = self.providers.get(job.platform)
            if provider is None:
                raise PushError(f"no {job.platform!r} provider is configured", permanent=True)
            request = await provider.request(out, self.http)
            await send(self.egress if request.client_chosen else self.http, request)
            return "sent"
        except PushError as exc:
            if exc.token_gone:
                await self.devices.forget(job.user_id, job.device_id, job.push_token)
            if exc.permanent or job.attempt + 1 >= self.settings.push_max_attempts:
                await self.dead(job, exc.message)
                return "dead"
            due = int((time.time() + backoff_s(self.settings, job.attempt)) * 1000)
            await self.retries.schedule(dataclasses.replace(job, attempt=job.attempt + 1), due)
            return "retry"
        except Exception as exc:  # a bug in a builder must not stop the agent: dead-letter it
            log.exception("push %s to %s failed", job.message_id, job.device_id)
            await self.dead(job, f"{type(exc).__name__}: {exc}")
            return "dead"

    async def with_preview(self, job: PushRequested) -> PushRequested | None:
        """The job with its body as the timeline has the message now; None if it is deleted
        or gone. Its timeline row is read for every attempt: an edit shows, a deletion stops it."""
        if self.timelines is None:
            raise RuntimeError("a preview push needs the timeline store")
        m = (await self.timelines.messages(job.conversation_id, [job.seq])).get(job.seq)
        if m is None or m.deleted:
            return None
        media_type = (m.media or {}).get("content_type")  # TimelineMessage.media is a dict or None
        return dataclasses.replace(job, body=preview_text(m.body, media_type), preview=False)

    async def dead(self, job: PushRequested, error: str) -> None:
        fields = {f.name: getattr(job, f.name) for f in dataclasses.fields(job) if f.name not in ("attempt", "preview")}
        failed = PushFailed(**fields, attempts=job.attempt + 1, error=error, failed_at=int(time.time() * 1000))
        log.warning("push dead-lettered after %d attempts: %s %s/%s: %s", failed.attempts, job.platform,
                    job.user_id, job.device_id, error)
        await self.publish(self.settings.push_dead_topic, failed)
