"""The profiles agent: ``ProfileUpdated`` (keyed by user id, on the profiles topic, written by
the gateways) projected into Redis, then a ``profile`` frame to every device of everyone who
shares a conversation with the user, and the answer to the request that made the change.
Gateways validate a change (the avatar is the user's own upload) before they produce it.
"""

from __future__ import annotations

from typing import Any

from streams.batching import take_batches
from streams import metrics
from streams.agents import resources
from streams.app import app
from streams.resources import Resources
from streams.retry import until_written
from streams.topics import profiles_topic
from projections.profiles import ProfileProjection, ProfileRouter

BATCH = 200
WITHIN_S = 0.005


@app.agent(profiles_topic)
async def project_profiles(stream: Any) -> None:
    res = await resources.ready()
    profiles = ProfileProjection(res.redis)
    router = ProfileRouter(profiles, res.conversations, res.connections)
    async for batch in take_batches(stream, BATCH, WITHIN_S):
        events = [e.value.event for e in batch]
        metrics.events.labels("project_profiles").inc(len(events))
        with metrics.timed("profiles"):
            updates = await until_written(lambda: profiles.apply(events), "projecting profiles")
        await until_written(lambda: _announce(res, router, updates), "sending profile frames")


async def _announce(res: Resources, router: ProfileRouter, updates: list[Any]) -> None:
    await res.deliver(await router.route(updates))
