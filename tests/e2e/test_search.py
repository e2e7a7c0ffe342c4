"""GET /v1/search through the running system: found by the current body within a second, never
across membership: not a stranger's, not another conversation's, not deleted, a removed member
only up to their removal."""

from __future__ import annotations

import asyncio
import urllib.parse

import pytest

from tests.client import sign_in_users
from tests.e2e.test_changes import change, send
from tests.support import System


@pytest.fixture(scope="module")
def system(stack, tmp_path_factory):
    system = System(stack, tmp_path_factory.mktemp("e2e-search"))
    system.start_worker()
    system.start_gateway()
    yield system
    system.stop()


async def search(client, q: str, **params) -> tuple[int, dict]:
    query = urllib.parse.urlencode({"q": q, **params})
    return await client.call("GET", f"/v1/search?{query}")


async def found(client, q: str, **params) -> list[tuple[str, int]]:
    status, body = await search(client, q, **params)
    assert status == 200, body
    return [(r["message"]["conversation_id"], r["message"]["seq"]) for r in body["results"]]


async def test_search_respects_membership_and_current_bodies(system, session):
    alice, bob, carol, mallory = await sign_in_users(session, system.url(), "alice", "bob", "carol", "mallory")
    a = await alice.device("a1")
    m = await mallory.device("m1")
    team = (await alice.create_group("team", [bob.user_id, carol.user_id]))["conversation_id"]
    other = (await mallory.create_group("other", []))["conversation_id"]
    await a.wait_for("conversation", lambda f: f["conversation"]["conversation_id"] == team)
    await m.wait_for("conversation", lambda f: f["conversation"]["conversation_id"] == other)
    await send(a, team, "c1", "Zebra crossing at noon")
    await send(a, team, "c2", "the zebras are STRIPED")
    await send(m, other, "x1", "zebra secrets of mallory")
    await asyncio.sleep(1.0)  # within a second of the ack

    status, body = await search(bob, "zebra")
    assert status == 200
    assert [(r["message"]["seq"], r["highlights"]) for r in body["results"]] == [(2, [[4, 9]]), (1, [[0, 5]])]
    assert body["results"][0]["message"]["body"] == "the zebras are STRIPED" and body["has_more"] is False
    assert await found(bob, "zebra cross") == [(team, 1)]  # every word; the last as a prefix
    assert await found(bob, "zeb crossing") == []  # only the last word may be a prefix
    assert await found(mallory, "zebra") == [(other, 1)]  # never another conversation's words
    assert await found(bob, "zebra", conversation_id=team, limit=1) == [(team, 2)]
    status, body = await search(bob, "zebra", conversation_id=other)
    assert status in (403, 404)

    await change(a, {"type": "edit", "id": "e1", "conversation_id": team, "seq": 1, "body": "giraffe crossing"})
    await asyncio.sleep(1.0)
    assert await found(carol, "zebra") == [(team, 2)]  # found by its current body only
    assert await found(carol, "giraffe") == [(team, 1)]
    await change(a, {"type": "delete", "id": "d1", "conversation_id": team, "seq": 2})
    await asyncio.sleep(1.0)
    assert await found(carol, "zebras") == []  # never a deleted message

    status, _ = await alice.call("DELETE", f"/v1/conversations/{team}/members/{carol.user_id}")
    assert status == 204
    await send(a, team, "c3", "giraffe news after carol left")
    await asyncio.sleep(1.0)
    assert await found(bob, "giraffe") == [(team, 3), (team, 1)]
    assert await found(carol, "giraffe") == [(team, 1)]  # a removed member: up to the removal


async def test_bad_search_input(system, session):
    (alice,) = await sign_in_users(session, system.url(), "alice")
    for params in ({"q": ""}, {"q": "  "}, {"q": "x", "limit": "many"}, {"q": "x", "before": "-5"}):
        status, body = await alice.call("GET", f"/v1/search?{urllib.parse.urlencode(params)}")
        assert status == 400, (params, body)
    status, body = await alice.call("GET", "/v1/search")
    assert status == 400
    status, body = await search(alice, "x", limit=500)  # clamped, not refused
    assert status == 200 and body == {"results": [], "has_more": False}
