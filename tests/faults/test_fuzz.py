"""Fuzzing the edge: generated WebSocket frames and HTTP bodies. Every bad input gets a
protocol error (never a 500, never a closed socket), the gateway keeps running, and nothing
changes: the conversation the fuzzing user cannot touch keeps its members and its history.

Hypothesis drives synchronous tests; each example runs its client on an event loop of its
own in a worker thread, apart from the suite's loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any

import aiohttp
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.client import Client, uid
from tests.support import System

CODES = {"bad_request", "unauthorized", "forbidden", "not_found", "conflict", "too_large", "rate_limited",
         "unavailable"}
FRAME_TYPES = ["send", "typing", "receipt", "sync", "ping", "hello", "message", "", "SEND"]
FIELDS = ["conversation_id", "client_msg_id", "body", "media_id", "typing", "seq", "status", "cursors", "id"]
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**63, max_value=2**63 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10)
frames = st.one_of(
    st.fixed_dictionaries({"type": st.sampled_from(FRAME_TYPES)},
                          optional={f: json_values for f in FIELDS}).map(orjson.dumps).map(bytes.decode),
    json_values.map(orjson.dumps).map(bytes.decode),
    st.text(max_size=60),
)
bodies = st.one_of(st.binary(max_size=200), json_values.map(orjson.dumps),
                   st.dictionaries(st.sampled_from(["type", "name", "members", "peer", "user_ids", "body",
                                                    "client_msg_id", "description", "user_id"]),
                                   json_values, max_size=4).map(orjson.dumps))


def in_thread(coro: Any) -> Any:
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result(timeout=60)


@pytest.fixture(scope="module")
def target(stack, tmp_path_factory):
    """A running system; alice's group that eve, the fuzzing user, is not in."""
    system = System(stack, tmp_path_factory.mktemp("fuzz"))
    system.start_worker()
    system.start_gateway()

    async def setup() -> dict[str, Any]:
        async with aiohttp.ClientSession() as session:
            alice = await Client.sign_in(session, system.url(), uid("alice"))
            eve = await Client.sign_in(session, system.url(), uid("eve"))
            group = await alice.create_group("guarded", [uid("bob")])
            return {"alice": alice.token, "eve": eve.token, "eve_id": eve.user_id, "group": group}

    yield system, in_thread(setup())
    system.stop()


async def untouched(system: System, ctx: dict[str, Any]) -> None:
    """The guarded group is as it was and eve is in no conversation."""
    async with aiohttp.ClientSession() as session:
        cid = ctx["group"]["conversation_id"]
        for token, path, want in ((ctx["alice"], f"/v1/conversations/{cid}", ctx["group"]),
                                  (ctx["alice"], f"/v1/conversations/{cid}/messages", {"messages": [], "has_more": False}),
                                  (ctx["eve"], "/v1/conversations", {"conversations": []})):
            async with session.get(f"{system.url()}{path}", headers={"Authorization": f"Bearer {token}"}) as r:
                assert (r.status, await r.json()) == (200, want), path


@FUZZ
@given(batch=st.lists(frames, min_size=1, max_size=15))
def test_every_bad_frame_gets_an_error_frame_and_the_socket_stays_open(target, batch):
    system, ctx = target

    async def run() -> None:
        async with aiohttp.ClientSession() as session:
            url = system.url().replace("http", "ws", 1)
            async with session.ws_connect(f"{url}/v1/ws?device_id=fuzz&token={ctx['eve']}") as ws:
                for i, text in enumerate(batch):
                    await ws.send_str(text)
                    await ws.send_json({"type": "ping", "id": f"probe-{i}"})
                    while True:
                        msg = await ws.receive(timeout=10)
                        assert msg.type == aiohttp.WSMsgType.TEXT, f"socket ended after {text!r}: {msg}"
                        frame = orjson.loads(msg.data)
                        if frame.get("type") == "pong" and frame.get("id") == f"probe-{i}":
                            break
                        assert frame["type"] in ("hello", "pong", "synced", "error"), (text, frame)
                        if frame["type"] == "error":
                            assert frame["code"] in CODES and frame["message"], (text, frame)
        await untouched(system, ctx)

    in_thread(run())
    assert system.gateways[0].running


@FUZZ
@given(body=bodies, where=st.sampled_from(["POST /v1/conversations", "PATCH /v1/conversations/{cid}",
                                           "POST /v1/conversations/{cid}/members",
                                           "POST /v1/conversations/{cid}/messages", "POST /v1/dev/token",
                                           "DELETE /v1/conversations/{cid}/members/{alice}"]))
def test_every_bad_body_gets_a_protocol_error_and_changes_nothing(target, body, where):
    system, ctx = target
    method, path = where.split(" ")
    path = path.format(cid=ctx["group"]["conversation_id"], alice=ctx["group"]["members"][0]["user_id"])

    async def run() -> None:
        async with aiohttp.ClientSession() as session:
            async with session.request(method, f"{system.url()}{path}", data=body,
                                       headers={"Authorization": f"Bearer {ctx['eve']}"}) as r:
                status, answer = r.status, await r.read()
        if path == "/v1/dev/token" and status == 200:
            return  # any user name signs in: not a change to anything shared
        if path == "/v1/conversations" and status in (200, 201):
            raise AssertionError(f"{body!r} created a conversation")  # generated bodies never name a type
        assert 400 <= status < 500, (status, answer)
        error = orjson.loads(answer)["error"]
        assert error["code"] in CODES and error["message"], answer
        await untouched(system, ctx)

    in_thread(run())
