"""Per-user limits that every gateway shares, kept in Redis (PROTOCOL.md, "Limits").

Send rate: a token bucket per user, ``rate:send:{user_id}`` (``chat.keys``), a hash
``{tokens, ts}`` that expires once the bucket would be full again (a missing bucket reads as
full). One Lua script reads, refills and spends, so concurrent sends through several gateways
never spend the same token twice, and it reads the time from the Redis server (``TIME``), so
gateways with skewed clocks agree. Every send path checks it after validation and before
producing the command: a refused send costs no broker work.

Connections: the user's live device entries in the connection registry (see
``admit_connection``).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import redis.asyncio as redis
from redis.exceptions import RedisError

from chat import keys
from chat.errors import RateLimited, Unavailable
from chat.events import MessageSendRequested
from chat.redis_pool import Script, run_pipeline
from chat.settings import Settings

if TYPE_CHECKING:
    from gateway.context import Gateway

SEND_PREFIX = keys.SEND_BUCKET
# A connection slot frees when one of the user's devices disconnects, which the server cannot
# predict; entries of a gateway that died without a goodbye expire after connection_ttl_s.
CONNECT_RETRY_AFTER_MS = 5_000

# KEYS[1]: the bucket. ARGV[1]: burst (most tokens held), ARGV[2]: tokens back per second.
# Returns {1, 0} when a token was spent, else {0, ms until one token is back}.
TOKEN_BUCKET_LUA = """
local burst = tonumber(ARGV[1])
local per_ms = tonumber(ARGV[2]) / 1000
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
-- max(0, ...): if the Redis clock stepped back, refill from the new now, never below.
tokens = math.min(burst, tokens + math.max(0, now - ts) * per_ms)
local allowed, retry_ms = 0, 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  retry_ms = math.max(1, math.ceil((1 - tokens) / per_ms))
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'ts', string.format('%.17g', now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / per_ms) + 1000)
return {allowed, retry_ms}
"""


class TokenBucket:
    """A token bucket per name in Redis: at most ``burst`` tokens, ``per_s`` back each second."""

    def __init__(self, client: redis.Redis, prefix: str, burst: int, per_s: float) -> None:
        if burst < 1 or per_s <= 0:
            raise ValueError(f"a token bucket needs burst >= 1 and per_s > 0, not {burst}, {per_s}")
        self.prefix = prefix
        self.burst = burst
        self.per_s = per_s
        self.script = Script(client, TOKEN_BUCKET_LUA)

    def key(self, name: str) -> str:
        return keys.bucket(self.prefix, name)

    async def take(self, name: str) -> int:
        """Spend one token of ``name``: 0 if there was one, else the ms until one is back."""
        try:
            allowed, retry_after_ms = await self.script(keys=[self.key(name)], args=[self.burst, self.per_s])
        except RedisError as exc:
            raise Unavailable("the rate limiter is unreachable") from exc
        return 0 if allowed else int(retry_after_ms)

    def take_in(self, pipe: Any, name: str) -> None:
        """``take`` queued on a pipeline; its reply is ``[allowed, retry_after_ms]``."""
        self.script.queue(pipe, [self.key(name)], [self.burst, self.per_s])


def send_bucket(client: redis.Redis, settings: Settings) -> TokenBucket:
    """The per-user send bucket (``rate:send:{user_id}``) with the configured limits."""
    return TokenBucket(client, SEND_PREFIX, settings.rate_burst, settings.rate_per_s)


async def admit_send(gw: Gateway, command: MessageSendRequested) -> str | None:
    """Spend one of the sender's tokens; ``RateLimited`` (ref: the client_msg_id) if none is left.
    Returns the sender's role in the conversation (None: not a member), read in the same round
    trip, for the caller to check (``Gateway.member``) once the rest of the send is checked.

    Called on every send path (WebSocket ``send``, HTTP POST) once the send is valid and
    before its command is produced.
    """
    retry_after_ms, role = await _spend(gw, command.sender_id, command.conversation_id)
    if retry_after_ms:
        gw.metrics.forget(command.sender_id, command.client_msg_id)  # never acked: no latency sample
        raise RateLimited(f"more than {gw.settings.rate_burst} messages at once or {gw.settings.rate_per_s:g} "
                          f"per second; retry in {retry_after_ms} ms",
                          retry_after_ms=retry_after_ms, ref=command.client_msg_id)
    return role


async def admit_change(gw: Gateway, command: Any) -> str:
    """``admit_send`` for an edit, deletion or reaction (protocol 1.1): one token from the same
    per-user budget; ``NotFound`` for a non-member before any command is produced."""
    retry_after_ms, role = await _spend(gw, command.user_id, command.conversation_id)
    if retry_after_ms:
        raise RateLimited(f"more than {gw.settings.rate_burst} messages and changes at once or "
                          f"{gw.settings.rate_per_s:g} per second; retry in {retry_after_ms} ms",
                          retry_after_ms=retry_after_ms, ref=command.change_id)
    return gw.member(role)


async def _spend(gw: Gateway, user_id: str, conversation_id: str) -> tuple[int, str | None]:
    """One token of the user's send budget and their role in the conversation, in one round
    trip shared with the other sends of this turn (``Admissions``): (0 or how long until a
    token, the role or None)."""
    if gw.admissions is None:
        gw.admissions = Admissions(gw)
    return await gw.admissions.spend(user_id, conversation_id)


class Admissions:
    """The token spends and role reads of every send (and change) that reaches this gateway in
    one turn of the event loop go to Redis in one pipeline: a pipeline cost about 190 us of the
    gateway's CPU however few commands it held, each command about 30 (one send per pipeline
    was 240 us a send, sixteen 40). A send waits for nothing more than before: the pipeline
    leaves at the end of the turn its send arrived in."""

    MAX = 256  # sends per pipeline

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.queue: list[tuple[str, str, asyncio.Future[tuple[int, str | None]]]] = []
        self.running: set[asyncio.Task[None]] = set()

    def spend(self, user_id: str, conversation_id: str) -> asyncio.Future[tuple[int, str | None]]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[int, str | None]] = loop.create_future()
        self.queue.append((user_id, conversation_id, future))
        if len(self.queue) == 1:
            loop.call_soon(self._send)
        return future

    def _send(self) -> None:
        queue, self.queue = self.queue, []
        for i in range(0, len(queue), self.MAX):
            task = asyncio.create_task(self._run(queue[i:i + self.MAX]))
            self.running.add(task)
            task.add_done_callback(self.running.discard)

    async def _run(self, batch: list[tuple[str, str, asyncio.Future[tuple[int, str | None]]]]) -> None:
        gw = self.gw

        def build(pipe: Any) -> None:
            for user_id, conversation_id, _ in batch:
                gw.send_limit.take_in(pipe, user_id)
                gw.conversations.role_in(pipe, conversation_id, user_id)

        try:
            # A NOSCRIPT ran nothing of the script, and reading the roles twice changes nothing.
            replies = await run_pipeline(gw.redis, build, gw.send_limit.script)
        except RedisError as exc:
            for *_, future in batch:
                if not future.done():
                    error = Unavailable("the rate limiter is unreachable")
                    error.__cause__ = exc
                    future.set_exception(error)
            return
        except BaseException as exc:  # cancelled with the gateway, or a bug: nobody waits forever
            for *_, future in batch:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else Unavailable("shutting down"))
            raise
        for i, (*_, future) in enumerate(batch):
            (allowed, retry_after_ms), role = replies[2 * i], replies[2 * i + 1]
            if not future.done():
                future.set_result(((0 if allowed else int(retry_after_ms)),
                                   (role.decode() if role is not None else None)))


async def admit_connection(gw: Gateway, user_id: str, device_id: str) -> str | None:
    """Refuse a WebSocket connect (before the upgrade) when the user is at
    ``max_connections_per_user`` sockets, counted across all gateways; else return the
    gateway that holds the device's current socket (None: none).

    A device holds one socket (its newest: ``Registry.add`` closes an older one here, and the
    caller tells the gateway returned to close its own), so the live device entries of the
    connection registry count the user's sockets, and a device reconnecting is always let
    back in. The check and the registration after the upgrade are not one atomic step, so
    connects of one user racing each other may briefly exceed the limit by a few.
    """
    live = (await gw.registry.directory.gateways([user_id])).get(user_id, {})
    if device_id in live:
        return live[device_id]
    limit = gw.settings.max_connections_per_user
    if len(live) >= limit:
        raise RateLimited(f"at most {limit} connected devices per user; close one first",
                          retry_after_ms=CONNECT_RETRY_AFTER_MS)
    return None
