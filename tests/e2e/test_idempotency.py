"""Idempotency keys on creating POSTs, and the per-user limit on new conversations (issue 13,
items 7 and 10), through the running system: a retry gets the first answer and makes nothing
twice, even when the first answer was lost."""

from __future__ import annotations

import asyncio

import pytest

from tests.client import Client, sign_in_users
from tests.support import System

PER_HOUR = 5


@pytest.fixture(scope="module")
def system(stack, tmp_path_factory):
    system = System(stack, tmp_path_factory.mktemp("e2e-idempotency"), CHAT_CONVERSATIONS_PER_HOUR=str(PER_HOUR))
    system.start_worker()
    system.start_gateway()
    # A gateway whose wait for the workers' answer always runs out: its creates answer 503
    # though the workers make them (the answer is lost, as under a slow pipeline).
    system.start_gateway(CHAT_REQUEST_TIMEOUT_S="0.001")
    yield system
    system.stop()


async def post_group(client: Client, name: str, key: str | None = None, members: list[str] = (),
                     base_url: str | None = None, in_body: bool = False) -> tuple[int, dict, dict]:
    headers = dict(client.headers)
    body = {"type": "group", "name": name, "members": list(members)}
    if key is not None and in_body:
        body["client_request_id"] = key
    elif key is not None:
        headers["Idempotency-Key"] = key
    async with client.session.post(f"{base_url or client.base_url}/v1/conversations", json=body,
                                   headers=headers) as r:
        return r.status, dict(r.headers), await r.json()


async def groups(client: Client, name: str) -> list[dict]:
    status, body = await client.call("GET", "/v1/conversations")
    assert status == 200
    return [c for c in body["conversations"] if c["name"] == name]


async def test_the_same_create_twice_with_a_key_makes_one_group_and_one_answer(system, session):
    alice, bob = await sign_in_users(session, system.url(), "alice", "bob")
    first = await post_group(alice, "once", "key-1", [bob.user_id])
    again = await post_group(alice, "once", "key-1", [bob.user_id])
    assert first[0] == again[0] == 201
    assert again[2] == first[2]
    assert len(await groups(alice, "once")) == 1
    in_body = await post_group(alice, "once", "key-1", [bob.user_id], in_body=True)  # the body's key is the same key
    assert in_body[0] == 201 and in_body[2]["conversation_id"] == first[2]["conversation_id"]

    other = await post_group(alice, "once", "key-2", [bob.user_id])
    assert other[0] == 201 and other[2]["conversation_id"] != first[2]["conversation_id"]
    assert len(await groups(alice, "once")) == 2
    # At once: neither finds the group made yet; the sequencer refuses the second create as
    # existing, and the workers answer it with the group the first made.
    together = await asyncio.gather(*(post_group(alice, "racing", "key-race") for _ in range(3)))
    assert [status for status, _, _ in together] == [201] * 3
    assert len({answer["conversation_id"] for _, _, answer in together}) == 1
    assert len(await groups(alice, "racing")) == 1
    mallory, = await sign_in_users(session, system.url(), "mallory")
    theirs = await post_group(mallory, "once", "key-1")  # keys are per user
    assert theirs[0] == 201 and theirs[2]["conversation_id"] != first[2]["conversation_id"]


async def test_a_retry_after_a_lost_answer_returns_the_group_the_first_attempt_made(system, session):
    alice, bob = await sign_in_users(session, system.url(), "alice", "bob")
    lost = await post_group(alice, "lost", "key-lost", [bob.user_id], base_url=system.url(system.gateways[1]))
    assert lost[0] == 503 and lost[2]["error"]["code"] == "unavailable"
    retry = await post_group(alice, "lost", "key-lost", [bob.user_id])
    assert retry[0] == 201
    (group,) = await groups(alice, "lost")
    assert retry[2]["conversation_id"] == group["conversation_id"]
    assert {m["user_id"] for m in retry[2]["members"]} == {alice.user_id, bob.user_id}
    # Without a key, each lost answer and its retry make a group each (what the web client saw).
    assert (await post_group(alice, "unkeyed", None, base_url=system.url(system.gateways[1])))[0] == 503
    assert (await post_group(alice, "unkeyed"))[0] == 201
    assert len(await groups(alice, "unkeyed")) == 2


async def test_creations_per_hour_are_limited_and_a_keyed_retry_is_not_counted_twice(system, session):
    alice, bob, carol = await sign_in_users(session, system.url(), "alice", "bob", "carol")
    for _ in range(3):
        assert (await post_group(alice, "g0", "k0"))[0] == 201  # one creation, charged once
    for i in range(1, PER_HOUR - 1):
        assert (await post_group(alice, f"g{i}", f"k{i}"))[0] == 201
    status, body = await alice.call("POST", "/v1/conversations", json={"type": "direct", "peer": bob.user_id})
    assert status == 201  # the fifth
    status, headers, refused = await post_group(alice, "sixth", "k-sixth")
    assert status == 429 and refused["error"]["code"] == "rate_limited"
    assert int(headers["Retry-After"]) >= 3_600 // PER_HOUR - 1
    status, body = await alice.call("POST", "/v1/conversations", json={"type": "direct", "peer": carol.user_id})
    assert status == 429
    # Over the limit, what exists is still answered: a keyed retry, an existing direct conversation.
    assert (await post_group(alice, "g0", "k0"))[0] == 201
    status, _ = await alice.call("POST", "/v1/conversations", json={"type": "direct", "peer": bob.user_id})
    assert status == 200
    assert len(await groups(alice, "sixth")) == 0
    assert (await post_group(bob, "bobs", "k0"))[0] == 201  # per user


async def test_uploads_and_messages_with_a_key_are_made_once(system, session):
    alice, = await sign_in_users(session, system.url(), "alice")

    async def upload(key: str, data: bytes) -> tuple[int, dict]:
        async with session.post(f"{system.url()}/v1/media", data=data,
                                headers={**alice.headers, "Content-Type": "text/plain", "Idempotency-Key": key}) as r:
            return r.status, await r.json()

    first, again, other = await upload("up-1", b"hello"), await upload("up-1", b"hello"), await upload("up-2", b"hello")
    assert first[0] == again[0] == other[0] == 201
    assert first[1] == again[1] and other[1]["media_id"] != first[1]["media_id"]

    cid = (await post_group(alice, "msgs"))[2]["conversation_id"]
    acks = []
    for _ in range(2):
        async with session.post(f"{system.url()}/v1/conversations/{cid}/messages", json={"body": "once"},
                                headers={**alice.headers, "Idempotency-Key": "msg-1"}) as r:
            acks.append((r.status, await r.json()))
    assert acks[0][0] == acks[1][0] == 202 and acks[0][1]["seq"] == acks[1][1]["seq"] == 1
    status, page = await alice.call("GET", f"/v1/conversations/{cid}/messages")
    assert [m["client_msg_id"] for m in page["messages"]] == ["msg-1"]
