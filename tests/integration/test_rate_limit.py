"""The per-user token bucket (one Lua script) on the real Redis."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import pytest_asyncio
import redis.asyncio as redis

from chat.settings import Settings
from gateway.limits import SEND_PREFIX, TokenBucket, send_bucket


@pytest_asyncio.fixture(loop_scope="session")
async def client(stack):
    client = redis.Redis.from_url(stack.redis_url)
    yield client
    await client.aclose()


def user() -> str:
    return f"u-{uuid.uuid4().hex[:8]}"


async def drain(bucket: TokenBucket, name: str, limit: int = 1_000) -> tuple[int, int]:
    """Take until refused: (tokens taken, retry_after_ms of the refusal)."""
    for taken in range(limit):
        retry_after_ms = await bucket.take(name)
        if retry_after_ms:
            return taken, retry_after_ms
    raise AssertionError(f"never refused after {limit} takes")


async def test_a_burst_passes_then_the_next_waits_about_one_token(client):
    bucket = TokenBucket(client, SEND_PREFIX, burst=5, per_s=10)
    name = user()
    assert [await bucket.take(name) for _ in range(5)] == [0] * 5
    retry_after_ms = await bucket.take(name)
    assert 0 < retry_after_ms <= 100  # one token comes back every 100 ms
    assert await bucket.take(name) > 0  # refusals spend nothing, and nothing came back yet
    await asyncio.sleep(retry_after_ms / 1000 + 0.02)
    assert await bucket.take(name) == 0
    assert await bucket.take(name) > 0


async def test_tokens_refill_at_the_configured_rate_up_to_the_burst(client):
    bucket = TokenBucket(client, SEND_PREFIX, burst=5, per_s=10)
    name = user()
    assert (await drain(bucket, name))[0] == 5
    await asyncio.sleep(0.3)  # three tokens back (a fourth only if this sleep overran by 100 ms)
    taken, _ = await drain(bucket, name)
    assert taken in (3, 4)
    fast = TokenBucket(client, SEND_PREFIX, burst=5, per_s=100)
    other = user()
    assert (await drain(fast, other))[0] == 5
    await asyncio.sleep(0.2)  # 20 tokens' worth of time: the bucket holds 5 at most
    assert (await drain(fast, other))[0] == 5


async def test_users_are_independent(client):
    bucket = TokenBucket(client, SEND_PREFIX, burst=5, per_s=10)
    alice, bob = user(), user()
    assert (await drain(bucket, alice))[0] == 5
    assert await bucket.take(bob) == 0
    assert (await drain(bucket, bob))[0] == 4
    assert await bucket.take(alice) > 0


async def test_gateways_share_one_bucket_per_user(client, stack):
    other_client = redis.Redis.from_url(stack.redis_url)  # another gateway's pool
    try:
        one = TokenBucket(client, SEND_PREFIX, burst=5, per_s=10)
        two = TokenBucket(other_client, SEND_PREFIX, burst=5, per_s=10)
        name = user()
        results = await asyncio.gather(*(b.take(name) for b in (one, two) for _ in range(6)))
        assert sum(1 for r in results if r == 0) == 5  # atomic: no token spent twice
        assert await one.take(name) > 0 and await two.take(name) > 0
    finally:
        await other_client.aclose()


async def test_the_bucket_is_a_hash_that_expires_once_full_again(client):
    bucket = send_bucket(client, Settings(rate_burst=5, rate_per_s=10))
    name = user()
    key = "rate:send:{%s}" % name
    assert bucket.key(name) == key
    started = time.monotonic()
    for _ in range(3):
        await bucket.take(name)
    elapsed = time.monotonic() - started
    state = await client.hgetall(key)
    assert set(state) == {b"tokens", b"ts"}
    # 5 - 3 spent, plus what 10/s refilled between the first take and the last (a loaded
    # machine can take tens of ms over the three calls; it flaked at 2.107 with a fixed 2.1).
    assert 1.9 <= float(state[b"tokens"]) <= 2 + 10 * elapsed + 1e-6
    # Full again in 300 ms; the key lives that long plus a margin, not forever.
    assert 300 < await client.pttl(key) <= 1_300


async def test_settings_defaults_follow_the_protocol():
    settings = Settings()
    assert (settings.rate_burst, settings.rate_per_s, settings.max_connections_per_user) == (200, 50.0, 20)
    env = Settings.from_env({"CHAT_RATE_BURST": "20", "CHAT_RATE_PER_S": "5",
                             "CHAT_MAX_CONNECTIONS_PER_USER": "3"})
    assert (env.rate_burst, env.rate_per_s, env.max_connections_per_user) == (20, 5.0, 3)


@pytest.mark.parametrize("burst, per_s", [(0, 10.0), (5, 0.0), (5, -1.0)])
async def test_a_bucket_that_could_never_pass_is_a_configuration_error(client, burst, per_s):
    with pytest.raises(ValueError):
        TokenBucket(client, SEND_PREFIX, burst=burst, per_s=per_s)


async def test_sends_of_one_turn_are_admitted_in_one_pipeline_each_with_its_own_answer(client, monkeypatch):
    from types import SimpleNamespace

    import gateway.limits
    from chat.events import ConversationCreated, Member, Origin
    from projections.conversations import ConversationProjection

    conversations = ConversationProjection(client)
    cid, alice, bob, mallory = f"c-{uuid.uuid4().hex[:8]}", user(), user(), user()
    await conversations.apply([ConversationCreated(cid, "group", "g", "", [Member(alice, "admin"), Member(bob, "member")],
                                                   alice, 1, Origin("gw"))])
    gw = SimpleNamespace(redis=client, conversations=conversations, admissions=None,
                         send_limit=TokenBucket(client, SEND_PREFIX, burst=2, per_s=0.01))
    pipelines = []
    real = gateway.limits.run_pipeline
    monkeypatch.setattr(gateway.limits, "run_pipeline", lambda *a: pipelines.append(a) or real(*a))
    answers = await asyncio.gather(*(gateway.limits._spend(gw, u, cid) for u in (alice, alice, alice, bob, mallory)))
    assert len(pipelines) == 1
    assert [(retry > 0, role) for retry, role in answers] == [
        (False, "admin"), (False, "admin"), (True, "admin"), (False, "member"), (False, None)]
    # A Redis that cannot be reached fails every send of the turn with unavailable.
    broken = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    gw_down = SimpleNamespace(**{**vars(gw), "redis": broken, "admissions": None})
    results = await asyncio.gather(*(gateway.limits._spend(gw_down, u, cid) for u in (alice, bob)),
                                   return_exceptions=True)
    assert [type(r).__name__ for r in results] == ["Unavailable", "Unavailable"]
    await broken.aclose()
