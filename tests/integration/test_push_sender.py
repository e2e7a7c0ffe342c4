"""The push sender on a real Redis and a local webhook server: one notification per message and
device however often a job comes, due retries taken once by concurrent workers, dead letters."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest_asyncio
import redis.asyncio as redis

from chat.events import PushFailed, PushRequested
from chat.settings import Settings
from infra.services import free_port
from push.providers import providers_for
from push.sender import PushSender, RetryQueue, backoff_s
from tests.push_server import PushEndpoints


@pytest_asyncio.fixture(loop_scope="session")
async def endpoints():
    server = await PushEndpoints(free_port()).start()
    yield server
    await server.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def client(stack):
    c = redis.Redis.from_url(stack.redis_url.rsplit("/", 1)[0] + "/15")
    await c.flushdb()
    yield c
    await c.aclose()


# The local webhook server is http on loopback: allowed as an operator allows a private receiver.
LOCAL_HOOKS = {"push_allow_http": True, "push_allow_cidrs": "127.0.0.0/8"}


def job(url: str, message_id: str = "m1", attempt: int = 0) -> PushRequested:
    return PushRequested("c1", 1, message_id, "alice", "bob", "hook", "webhook", url, "c1", "New message", None,
                         1, attempt)


async def test_one_notification_per_message_and_device(endpoints, client):
    settings = Settings(**LOCAL_HOOKS, topic_prefix="ps1.")
    dead: list[PushFailed] = []

    async def publish(topic, event):
        dead.append(event)
    sender = PushSender(settings, client, providers_for(settings), publish)
    url = f"{endpoints.base_url}/hook/ok-dedup"
    outcomes = await asyncio.gather(*(sender.handle(job(url)) for _ in range(5)))  # replays, concurrently
    assert sorted(outcomes) == ["duplicate"] * 4 + ["sent"]
    assert await sender.handle(job(url, "m2")) == "sent"  # another message: another notification
    assert len(endpoints.of("webhook", "ok-dedup")) == 2 and dead == []
    await sender.close()


async def test_retry_backoff_queue_and_dead_letter(endpoints, client):
    settings = Settings(**LOCAL_HOOKS, topic_prefix="ps2.", push_max_attempts=2, push_backoff_s=0.5)
    dead: list[tuple[str, PushFailed]] = []

    async def publish(topic, event):
        dead.append((topic, event))
    sender = PushSender(settings, client, providers_for(settings), publish)
    url = f"{endpoints.base_url}/hook/down-q"
    before = time.time() * 1000
    assert await sender.handle(job(url)) == "retry"
    queue = RetryQueue(client, settings)
    assert await queue.due(int(before)) == []  # not due yet
    later = int(before + 600)
    taken = await asyncio.gather(*(queue.due(later) for _ in range(4)))  # four workers' timers
    (retry,) = [j for batch in taken for j in batch]  # exactly one of them got it
    assert retry.attempt == 1 and retry.message_id == "m1"
    assert await sender.handle(retry) == "dead"  # the last attempt
    ((topic, failed),) = dead
    assert topic == "ps2.push.dead" and failed.attempts == 2 and failed.error.startswith("HTTP 500")
    assert await sender.handle(job("ftp://nope", "m3")) == "dead"  # permanent: no retry
    assert 0.4 <= backoff_s(settings, 0) <= 0.5 and 1.6 <= backoff_s(settings, 2) <= 2.0
    await sender.close()


async def test_a_token_the_provider_calls_gone_is_unregistered(endpoints, client):
    settings = Settings(**LOCAL_HOOKS, topic_prefix="ps3.")
    dead: list[PushFailed] = []

    async def publish(topic, event):
        dead.append(event)
    sender = PushSender(settings, client, providers_for(settings), publish)
    gone, moved = f"{endpoints.base_url}/hook/gone-a", f"{endpoints.base_url}/hook/gone-b"
    await sender.devices.register("bob", "hook", "webhook", gone)
    await sender.devices.register("bob", "other", "webhook", f"{endpoints.base_url}/hook/ok-x")
    assert await sender.handle(job(gone, "g1")) == "dead"
    assert set((await sender.devices.of(["bob"]))["bob"]) == {"other"}  # unregistered
    await sender.devices.register("bob", "hook", "webhook", moved)  # re-registered meanwhile: kept
    stale = dataclasses.replace(job(moved, "g2"), push_token=gone)
    assert await sender.handle(stale) == "dead"
    assert (await sender.devices.of(["bob"]))["bob"]["hook"].push_token == moved
    assert [f.error[:8] for f in dead] == ["HTTP 410", "HTTP 410"]
    await sender.close()


async def test_a_preview_is_read_at_send_time_and_a_deleted_message_is_not_pushed(endpoints, client, tmp_path):
    """Push jobs carry no body: the sender reads the message when it sends, so an edit shows and a
    deletion before the push goes out stops it (the body never reaches the provider)."""
    from projections.timelines import StoredChange, TimelineMessage, current_ms
    from projections.timelines_sqlite import SqliteTimelineStore

    store = SqliteTimelineStore(tmp_path / "t.sqlite3", 86_400_000)
    await store.open()
    now = current_ms()
    live = [TimelineMessage("c9", seq, f"m9-{seq}", "alice", f"k{seq}", f"words {seq}", None, now) for seq in (1, 2)]
    await store.append(live)
    settings = Settings(**LOCAL_HOOKS, topic_prefix="ps4.")
    sender = PushSender(settings, client, providers_for(settings), lambda topic, event: asyncio.sleep(0), store)
    url = f"{endpoints.base_url}/hook/ok-preview"

    def preview(seq: int) -> PushRequested:
        return dataclasses.replace(job(url, f"m9-{seq}"), conversation_id="c9", seq=seq, preview=True)
    assert await sender.handle(preview(1)) == "sent"
    (hook,) = endpoints.of("webhook", "ok-preview")
    assert hook.json()["body"] == "words 1"

    tomb = dataclasses.replace(live[1], body="", deleted=True, change_seq=1)
    await store.apply_changes([tomb], [StoredChange("c9", 1, 2, "delete", "alice", now, now)])
    assert await sender.handle(preview(2)) == "erased"
    assert len(endpoints.of("webhook", "ok-preview")) == 1
    assert all(b"words 2" not in r.body for r in endpoints.records)
    await sender.close()
    await store.close()
