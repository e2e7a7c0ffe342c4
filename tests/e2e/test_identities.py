"""User and device ids that look like other ones are refused wherever they enter (chat.identity):
dev sign-in, token subjects, member lists, presence queries, device ids."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from chat.settings import Settings
from gateway.auth import issue_token
from tests.client import sign_in_users, uid
from tests.support import System

LOOK_ALIKES = [" alice", "alice ", "alice\u202e", "\u202ealice", "Alice", "\uff41lice", "al\u200bice", "a\tb",
               "alice:lease", "", "a" * 65]


@pytest.fixture(scope="module")
def system(stack, tmp_path_factory):
    system = System(stack, tmp_path_factory.mktemp("e2e-identities"))
    system.start_worker()
    system.start_gateway()
    yield system
    system.stop()


def refused(status, body, code="bad_request"):
    return status == {"bad_request": 400, "unauthorized": 401}[code] and body["error"]["code"] == code


async def test_dev_sign_in_refuses_look_alike_user_ids(system, session):
    for user_id in LOOK_ALIKES:
        async with session.post(f"{system.url()}/v1/dev/token", json={"user_id": user_id}) as r:
            assert refused(r.status, await r.json()), user_id
    async with session.post(f"{system.url()}/v1/dev/token", json={"user_id": uid("alice.b_c@x")}) as r:
        assert r.status == 200


async def test_a_token_whose_subject_is_no_user_id_is_refused(system, session):
    token = issue_token(Settings(), "alice\u202e")
    async with session.get(f"{system.url()}/v1/conversations", headers={"Authorization": f"Bearer {token}"}) as r:
        assert refused(r.status, await r.json(), "unauthorized")


async def test_member_lists_and_presence_queries_refuse_look_alikes(system, session):
    alice, bob = await sign_in_users(session, system.url(), "alice", "bob")
    cid = (await alice.create_group("g", [bob.user_id]))["conversation_id"]
    for bad in (f" {bob.user_id}", f"{bob.user_id}\u202e", bob.user_id.upper()):
        assert refused(*await alice.call("POST", "/v1/conversations", json={
            "type": "group", "name": "g", "members": [bad]})), bad
        assert refused(*await alice.call("POST", "/v1/conversations", json={"type": "direct", "peer": bad})), bad
        assert refused(*await alice.call("POST", f"/v1/conversations/{cid}/members", json={"user_ids": [bad]})), bad
        assert refused(*await alice.call("GET", f"/v1/presence?user_ids={quote(bad)}")), bad
    status, conv = await alice.call("GET", f"/v1/conversations/{cid}")
    assert status == 200 and {m["user_id"] for m in conv["members"]} == {alice.user_id, bob.user_id}


async def test_device_ids_refuse_spaces_and_format_characters(system, session):
    (alice,) = await sign_in_users(session, system.url(), "alice")
    for bad in ("d 1", "d\u202e1", "d:1"):
        assert refused(*await alice.call("POST", "/v1/devices", json={
            "device_id": bad, "platform": "webhook", "push_token": "https://example.invalid/p"})), bad
        async with session.get(f"{system.url()}/v1/ws?device_id={quote(bad)}", headers=alice.headers) as r:
            assert r.status == 400 and (await r.json())["error"]["code"] == "bad_request", bad
    await (await alice.device("Web-1.a_b")).close()
