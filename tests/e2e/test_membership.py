"""Group membership through the running system: rename, add, remove, leave, promotion, and
what a removed member can still see (history up to their removal, nothing after)."""

from __future__ import annotations


import pytest

from tests.client import sign_in_users
from tests.support import System


@pytest.fixture(scope="module")
def system(stack, tmp_path_factory):
    system = System(stack, tmp_path_factory.mktemp("e2e-membership"))
    system.start_worker()
    system.start_gateway()
    yield system
    system.stop()


def roles(conversation):
    return {m["user_id"]: m["role"] for m in conversation["members"]}


async def test_admins_rename_and_members_hear_of_it(system, session):
    alice, bob = await sign_in_users(session, system.url(), "alice", "bob")
    cid = (await alice.create_group("old", [bob.user_id]))["conversation_id"]
    b1 = await bob.device("b1")
    status, conv = await alice.call("PATCH", f"/v1/conversations/{cid}", json={"name": "new", "description": "about"})
    assert status == 200 and (conv["name"], conv["description"]) == ("new", "about")
    (frame,) = await b1.wait_for("conversation", lambda f: f["conversation"]["name"] == "new")
    assert frame["conversation"]["description"] == "about"
    status, body = await bob.call("PATCH", f"/v1/conversations/{cid}", json={"name": "mine"})
    assert status == 403 and body["error"]["code"] == "forbidden"
    status, body = await alice.call("PATCH", f"/v1/conversations/{cid}", json={"name": 5})
    assert status == 400
    status, conv = await bob.call("GET", f"/v1/conversations/{cid}")
    assert conv["name"] == "new"
    await b1.close()


async def test_added_members_receive_from_then_on(system, session):
    alice, bob, carol = await sign_in_users(session, system.url(), "alice", "bob", "carol")
    cid = (await alice.create_group("g", [bob.user_id]))["conversation_id"]
    a1, c1 = await alice.device("a1"), await carol.device("c1")
    await a1.send_message(cid, "before", "before carol")
    await a1.wait_for("ack")
    status, conv = await alice.call("POST", f"/v1/conversations/{cid}/members", json={"user_ids": [carol.user_id]})
    assert status == 200 and roles(conv)[carol.user_id] == "member" and len(conv["members"]) == 3
    await c1.wait_for("conversation", lambda f: f["conversation"]["conversation_id"] == cid)
    await a1.send_message(cid, "after", "welcome carol")
    (message,) = await c1.wait_for("message", lambda f: f["message"]["conversation_id"] == cid)
    assert message["message"]["body"] == "welcome carol"
    status, again = await alice.call("POST", f"/v1/conversations/{cid}/members", json={"user_ids": [carol.user_id]})
    assert status == 200 and len(again["members"]) == 3  # adding a member twice changes nothing
    status, body = await bob.call("POST", f"/v1/conversations/{cid}/members", json={"user_ids": ["zed"]})
    assert status == 403
    status, page = await carol.call("GET", f"/v1/conversations/{cid}/messages")
    assert [m["body"] for m in page["messages"]] == ["before carol", "welcome carol"]  # joiners see history
    await a1.close(), await c1.close()


async def test_removed_member_stops_receiving_and_reads_only_up_to_removal(system, session):
    alice, bob = await sign_in_users(session, system.url(), "alice", "bob")
    cid = (await alice.create_group("g", [bob.user_id]))["conversation_id"]
    a1, b1 = await alice.device("a1"), await bob.device("b1")
    for i in range(3):
        await a1.send_message(cid, f"m{i}", f"visible {i}")
    await b1.wait_for("message", count=3)
    status, _ = await alice.call("DELETE", f"/v1/conversations/{cid}/members/{bob.user_id}")
    assert status == 204
    (frame,) = await b1.wait_for("conversation", lambda f: bob.user_id not in roles(f["conversation"]))
    await a1.send_message(cid, "secret", "after bob left")
    await a1.wait_for("ack", lambda f: f["client_msg_id"] == "secret")
    await a1.wait_for("message", lambda f: f["message"]["body"] == "after bob left")
    assert [m["body"] for m in b1.messages(cid)] == ["visible 0", "visible 1", "visible 2"]
    status, page = await bob.call("GET", f"/v1/conversations/{cid}/messages")
    assert status == 200 and [m["seq"] for m in page["messages"]] == [1, 2, 3]
    status, page = await bob.call("GET", f"/v1/conversations/{cid}/messages?after_seq=2")
    assert [m["seq"] for m in page["messages"]] == [3] and page["has_more"] is False
    status, _ = await bob.call("GET", f"/v1/conversations/{cid}")
    assert status == 404
    await b1.send_message(cid, "back", "can I still post?")
    (error,) = await b1.wait_for("error", lambda f: f.get("ref") == "back")
    assert error["code"] == "not_found"
    status, listed = await bob.call("GET", "/v1/conversations")
    assert cid not in [c["conversation_id"] for c in listed["conversations"]]
    await b1.send({"type": "sync", "cursors": {}})
    (synced,) = await b1.wait_for("synced")
    assert cid not in synced["cursors"]
    await a1.close(), await b1.close()


async def test_leave_and_promotion_of_the_longest_standing_member(system, session):
    alice, bob, carol = await sign_in_users(session, system.url(), "alice", "bob", "carol")
    cid = (await alice.create_group("g", [bob.user_id, carol.user_id]))["conversation_id"]
    status, _ = await bob.call("DELETE", f"/v1/conversations/{cid}/members/{carol.user_id}")
    assert status == 403  # members may only remove themselves
    status, _ = await alice.call("DELETE", f"/v1/conversations/{cid}/members/{alice.user_id}")
    assert status == 204
    status, conv = await bob.call("GET", f"/v1/conversations/{cid}")
    assert roles(conv) == {bob.user_id: "admin", carol.user_id: "member"}
    status, _ = await carol.call("DELETE", f"/v1/conversations/{cid}/members/{carol.user_id}")
    assert status == 204
    status, conv = await bob.call("GET", f"/v1/conversations/{cid}")
    assert roles(conv) == {bob.user_id: "admin"}


async def test_direct_conversations_never_change_members(system, session):
    alice, bob = await sign_in_users(session, system.url(), "alice", "bob")
    status, dm = await alice.call("POST", "/v1/conversations", json={"type": "direct", "peer": bob.user_id})
    cid = dm["conversation_id"]
    status, _ = await alice.call("POST", f"/v1/conversations/{cid}/members", json={"user_ids": ["carol"]})
    assert status == 403
    status, _ = await alice.call("DELETE", f"/v1/conversations/{cid}/members/{alice.user_id}")
    assert status == 403
    status, _ = await alice.call("PATCH", f"/v1/conversations/{cid}", json={"name": "us"})
    assert status == 403
    status, body = await alice.call("POST", f"/v1/conversations/{cid}/members", json={"user_ids": []})
    assert status == 400


async def test_members_per_request_limit(system, session):
    (alice,) = await sign_in_users(session, system.url(), "alice")
    too_many = [f"u{i}" for i in range(system.settings.max_members_per_request + 1)]
    status, body = await alice.call("POST", "/v1/conversations", json={"type": "group", "name": "x", "members": too_many})
    assert status == 413 and body["error"]["code"] == "too_large"
    cid = (await alice.create_group("g", []))["conversation_id"]
    status, body = await alice.call("POST", f"/v1/conversations/{cid}/members", json={"user_ids": too_many})
    assert status == 413 and body["error"]["code"] == "too_large"
