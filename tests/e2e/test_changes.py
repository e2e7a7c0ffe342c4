"""Protocol 1.1 through the running system: edits, deletions, reactions, replies, mentions,
the change log and its sync, over WebSocket and HTTP, with every refusal answered."""

from __future__ import annotations

import asyncio
import urllib.parse

import pytest

from tests.client import Client, Device, sign_in_users, uid
from tests.e2e.test_media import fetch, png, upload
from tests.support import System


@pytest.fixture(scope="module")
def system(stack, tmp_path_factory):
    system = System(stack, tmp_path_factory.mktemp("e2e-changes"))
    system.start_worker()
    system.start_gateway()
    system.start_gateway()
    yield system
    system.stop()


async def group_of_three(system, session):
    alice, bob, carol = await sign_in_users(session, system.url(), "alice", "bob", "carol")
    a = await alice.device("a1")
    b = await bob.device("b1", base_url=system.url(system.gateways[1]))
    cid = (await alice.create_group("team", [bob.user_id, carol.user_id]))["conversation_id"]
    for d in (a, b):
        await d.wait_for("conversation", lambda f: f["conversation"]["conversation_id"] == cid)
    return alice, bob, carol, a, b, cid


async def send(device: Device, cid: str, cmid: str, body: str, **extra) -> dict:
    await device.send({"type": "send", "conversation_id": cid, "client_msg_id": cmid, "body": body, **extra})
    (ack,) = await device.wait_for("ack", lambda f: f["client_msg_id"] == cmid)
    return ack


async def change(device: Device, frame: dict) -> dict:
    """Send a change frame; its ``changed`` answer or ``error`` (by ref)."""
    await device.send(frame)
    answered = lambda f: f.get("id") == frame["id"] or f.get("ref") == frame["id"]  # noqa: E731
    for _ in range(400):
        for kind in ("changed", "error"):
            found = device.of_type(kind, answered)
            if found:
                return found[-1]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no answer to {frame}")


async def test_edit_react_delete_live_to_every_device_in_change_seq_order(system, session):
    alice, bob, carol, a, b, cid = await group_of_three(system, session)
    await send(a, cid, "c1", "hello wrld")
    edited = await change(a, {"type": "edit", "id": "e1", "conversation_id": cid, "seq": 1, "body": "hello world"})
    assert edited == {"type": "changed", "id": "e1", "conversation_id": cid, "seq": 1, "change_seq": 1}
    reacted = await change(b, {"type": "react", "id": "r1", "conversation_id": cid, "seq": 1, "emoji": "👍",
                               "on": True})
    assert reacted["change_seq"] == 2
    await change(a, {"type": "react", "id": "r2", "conversation_id": cid, "seq": 1, "emoji": "🎉", "on": True})
    await change(a, {"type": "react", "id": "r3", "conversation_id": cid, "seq": 1, "emoji": "👍", "on": True})
    for device in (a, b):  # the device that made each change too
        updates = await device.wait_for("message_updated", lambda f: f["conversation_id"] == cid, count=4)
        assert [u["change_seq"] for u in updates] == [1, 2, 3, 4]
        assert [(u["change"], u["by"]) for u in updates] == [
            ("edit", alice.user_id), ("reaction", bob.user_id), ("reaction", alice.user_id),
            ("reaction", alice.user_id)]
        final = updates[-1]["message"]
        assert final["body"] == "hello world" and final["edited_at"] is not None and final["deleted"] is False
        assert final["reactions"] == [{"emoji": "👍", "user_ids": [bob.user_id, alice.user_id]},
                                      {"emoji": "🎉", "user_ids": [alice.user_id]}]
    status, conversation = await alice.call("GET", f"/v1/conversations/{cid}")
    assert conversation["last_change_seq"] == 4

    deleted = await change(b, {"type": "delete", "id": "d0", "conversation_id": cid, "seq": 1})
    assert deleted["type"] == "error" and deleted["code"] == "forbidden" and deleted["ref"] == "d0"
    deleted = await change(a, {"type": "delete", "id": "d1", "conversation_id": cid, "seq": 1})
    assert deleted["change_seq"] == 5
    (update,) = await b.wait_for("message_updated", lambda f: f["change_seq"] == 5)
    assert update["change"] == "delete"
    tombstone = update["message"]
    assert (tombstone["body"], tombstone["media"], tombstone["deleted"], tombstone["reactions"]) == ("", None, True, [])
    status, page = await bob.call("GET", f"/v1/conversations/{cid}/messages")
    assert page["messages"][0] == tombstone  # history keeps the tombstone in its place
    status, listing = await bob.call("GET", "/v1/conversations")
    (entry,) = [c for c in listing["conversations"] if c["conversation_id"] == cid]
    assert entry["last_message"]["deleted"] is True and entry["last_message"]["body"] == ""


async def test_refusals_keep_the_socket_open_and_change_nothing(system, session):
    alice, bob, carol, a, b, cid = await group_of_three(system, session)
    await send(a, cid, "c1", "mine")
    cases = [
        (b, {"type": "edit", "id": "x1", "conversation_id": cid, "seq": 1, "body": "bob's"}, "forbidden"),
        (a, {"type": "edit", "id": "x2", "conversation_id": cid, "seq": 9, "body": "?"}, "not_found"),
        (a, {"type": "edit", "id": "x3", "conversation_id": cid, "seq": 1, "body": "x" * 70_000}, "too_large"),
        (a, {"type": "react", "id": "x4", "conversation_id": cid, "seq": 1, "emoji": "", "on": True}, "bad_request"),
        (a, {"type": "react", "id": "x5", "conversation_id": cid, "seq": 1, "emoji": "x" * 65, "on": True},
         "bad_request"),
        (a, {"type": "react", "id": "x6", "conversation_id": cid, "seq": 1, "emoji": "👍", "on": "yes"}, "bad_request"),
        (a, {"type": "edit", "id": "x7", "conversation_id": cid, "seq": 2**63, "body": "?"}, "bad_request"),
        (a, {"type": "edit", "id": "x8", "conversation_id": "no-such", "seq": 1, "body": "?"}, "not_found"),
        (a, {"type": "send", "client_msg_id": "x9", "conversation_id": cid, "body": "re", "reply_to": 7},
         "bad_request"),
    ]
    for device, frame, code in cases:
        ref = frame.get("id") or frame.get("client_msg_id")
        await device.send(frame)
        (err,) = await device.wait_for("error", lambda f, ref=ref: f.get("ref") == ref)
        assert err["code"] == code, (frame, err)
    for emoji in range(20):
        answer = await change(b, {"type": "react", "id": f"e{emoji}", "conversation_id": cid, "seq": 1,
                                  "emoji": f"e{emoji}", "on": True})
        assert answer["type"] == "changed"
    answer = await change(b, {"type": "react", "id": "e20", "conversation_id": cid, "seq": 1, "emoji": "e20",
                              "on": True})
    assert answer["type"] == "error" and answer["code"] == "bad_request"  # the 21st emoji
    await change(a, {"type": "delete", "id": "del", "conversation_id": cid, "seq": 1})
    for frame in ({"type": "edit", "id": "y1", "conversation_id": cid, "seq": 1, "body": "again"},
                  {"type": "react", "id": "y2", "conversation_id": cid, "seq": 1, "emoji": "👍", "on": True}):
        answer = await change(a, frame)
        assert answer["type"] == "error" and answer["code"] == "conflict"
    await a.send({"type": "ping", "id": "still-open"})
    await a.wait_for("pong", lambda f: f.get("id") == "still-open")
    status, changes = await alice.call("GET", f"/v1/conversations/{cid}/changes")
    assert [c["change"] for c in changes["changes"]] == ["reaction"] * 20 + ["delete"]


async def test_a_retried_id_gets_the_first_answer_and_no_ops_answer_null(system, session):
    alice, bob, carol, a, b, cid = await group_of_three(system, session)
    await send(a, cid, "c1", "same")
    first = await change(a, {"type": "edit", "id": "e1", "conversation_id": cid, "seq": 1, "body": "new"})
    a.frames.clear()
    again = await change(a, {"type": "edit", "id": "e1", "conversation_id": cid, "seq": 1, "body": "newer"})
    assert again["change_seq"] == first["change_seq"] == 1
    same = await change(a, {"type": "edit", "id": "e2", "conversation_id": cid, "seq": 1, "body": "new"})
    assert same["type"] == "changed" and same["change_seq"] is None
    off = await change(b, {"type": "react", "id": "r1", "conversation_id": cid, "seq": 1, "emoji": "👍", "on": False})
    assert off["change_seq"] is None
    status, history = await alice.call("GET", f"/v1/conversations/{cid}/messages")
    assert history["messages"][0]["body"] == "new"
    status, changes = await alice.call("GET", f"/v1/conversations/{cid}/changes")
    assert [c["change_seq"] for c in changes["changes"]] == [1]


async def test_http_calls(system, session):
    alice, bob, carol, a, b, cid = await group_of_three(system, session)
    await send(a, cid, "c1", "via http")
    base = f"/v1/conversations/{cid}/messages/1"
    status, message = await alice.call("PATCH", base, json={"body": "edited over http"})
    assert status == 200 and message["body"] == "edited over http" and message["edited_at"]
    emoji = urllib.parse.quote("❤️", safe="")
    status, message = await bob.call("PUT", f"{base}/reactions/{emoji}")
    assert status == 200 and message["reactions"] == [{"emoji": "❤️", "user_ids": [bob.user_id]}]
    status, message = await bob.call("PUT", f"{base}/reactions/{emoji}")  # already so: no change
    assert status == 200 and message["reactions"] == [{"emoji": "❤️", "user_ids": [bob.user_id]}]
    status, message = await bob.call("DELETE", f"{base}/reactions/{emoji}")
    assert status == 200 and message["reactions"] == []
    status, body = await bob.call("PATCH", base, json={"body": "not mine"})
    assert status == 403 and body["error"]["code"] == "forbidden"
    status, body = await alice.call("PATCH", f"/v1/conversations/{cid}/messages/abc", json={"body": "x"})
    assert status == 400
    status, body = await alice.call("PATCH", f"/v1/conversations/{cid}/messages/5", json={"body": "x"})
    assert status == 404
    status, body = await alice.call("PATCH", base, json={})
    assert status == 400
    stranger = await Client.sign_in(session, system.url(), uid("mallory"))
    status, body = await stranger.call("DELETE", base)
    assert status == 404
    status, body = await stranger.call("GET", f"/v1/conversations/{cid}/changes")
    assert status in (403, 404)
    status, _ = await alice.call("DELETE", base)
    assert status == 204
    status, _ = await alice.call("DELETE", base)  # deleting a deleted message: nothing to do
    assert status == 204
    status, changes = await carol.call("GET", f"/v1/conversations/{cid}/changes?after_change_seq=1&limit=2")
    assert status == 200 and changes["has_more"] is True
    assert [(c["change_seq"], c["change"]) for c in changes["changes"]] == [(2, "reaction"), (3, "reaction")]
    assert all(c["message"]["deleted"] for c in changes["changes"])  # each as it is now
    status, changes = await carol.call("GET", f"/v1/conversations/{cid}/changes?after_change_seq=3&limit=999")
    assert [c["change_seq"] for c in changes["changes"]] == [4] and changes["has_more"] is False


async def test_replies_and_mentions(system, session):
    alice, bob, carol, a, b, cid = await group_of_three(system, session)
    await send(a, cid, "c1", "the original " + "x" * 300)
    await send(b, cid, "c2", "a reply", reply_to=1, mentions=[alice.user_id, "nobody-here", alice.user_id,
                                                             carol.user_id])
    (live,) = await a.wait_for("message", lambda f: f["message"]["seq"] == 2)
    reply = live["message"]
    assert reply["reply_to"] == {"seq": 1, "sender_id": alice.user_id, "body": ("the original " + "x" * 300)[:200]}
    assert reply["mentions"] == [alice.user_id, carol.user_id]  # members only, once each
    await change(a, {"type": "edit", "id": "e1", "conversation_id": cid, "seq": 1, "body": "better"})
    status, page = await carol.call("GET", f"/v1/conversations/{cid}/messages")
    assert page["messages"][1]["reply_to"]["body"] == "better"  # the preview as it is now
    await change(a, {"type": "delete", "id": "d1", "conversation_id": cid, "seq": 1})
    status, page = await carol.call("GET", f"/v1/conversations/{cid}/messages")
    assert page["messages"][1]["reply_to"] == {"seq": 1, "sender_id": alice.user_id, "body": ""}
    status, ack = await carol.call("POST", f"/v1/conversations/{cid}/messages",
                                   json={"client_msg_id": "h1", "body": "over http", "reply_to": 2,
                                         "mentions": [bob.user_id]})
    assert status == 202 and ack["seq"] == 3
    (live,) = await b.wait_for("message", lambda f: f["message"]["seq"] == 3)
    assert live["message"]["reply_to"]["body"] == "a reply" and live["message"]["mentions"] == [bob.user_id]
    for bad in ({"mentions": "bob"}, {"mentions": [1]}, {"reply_to": "1"}, {"reply_to": 0}):
        status, body = await carol.call("POST", f"/v1/conversations/{cid}/messages",
                                        json={"client_msg_id": "bad", "body": "x", **bad})
        assert status == 400, (bad, body)


async def test_sync_replays_changes_after_the_messages_when_asked(system, session):
    alice, bob, carol, a, b, cid = await group_of_three(system, session)
    for i in range(1, 4):
        await send(a, cid, f"c{i}", f"m{i}")
    await change(a, {"type": "edit", "id": "e1", "conversation_id": cid, "seq": 2, "body": "m2!"})
    await change(b, {"type": "react", "id": "r1", "conversation_id": cid, "seq": 3, "emoji": "👀", "on": True})
    await change(a, {"type": "delete", "id": "d1", "conversation_id": cid, "seq": 1})
    phone = await carol.device("phone")
    await phone.send({"type": "sync", "cursors": {cid: 1}, "change_cursors": {cid: 1}})
    (synced,) = await phone.wait_for("synced")
    assert synced["cursors"][cid] == 3 and synced["change_cursors"][cid] == 3
    replay = [f for f in phone.frames if f["type"] in ("message", "message_updated")
              and f.get("conversation_id", f.get("message", {}).get("conversation_id")) == cid]
    assert [(f["type"], f["message"]["seq"], f.get("change_seq")) for f in replay] == [
        ("message", 2, None), ("message", 3, None), ("message_updated", 3, 2), ("message_updated", 1, 3)]
    assert replay[0]["message"]["body"] == "m2!"  # messages as they are now
    laptop = await carol.device("laptop")
    await laptop.send({"type": "sync", "cursors": {}})
    (synced,) = await laptop.wait_for("synced")
    assert "change_cursors" not in synced and not laptop.of_type("message_updated")
    assert [m["deleted"] for m in laptop.messages(cid)] == [True, False, False]
    await change(b, {"type": "react", "id": "r2", "conversation_id": cid, "seq": 3, "emoji": "👀", "on": False})
    (live,) = await phone.wait_for("message_updated", lambda f: f["change_seq"] == 4)
    assert live["message"]["reactions"] == []


async def test_deleting_erases_media_unless_another_message_uses_it(system, session):
    alice, bob, carol, a, b, cid = await group_of_three(system, session)
    status, media = await upload(alice, png(20, 20), "image/png")
    assert status == 201, media
    await send(a, cid, "c1", "", media_id=media["media_id"])
    await send(a, cid, "c2", "again", media_id=media["media_id"])
    await change(a, {"type": "delete", "id": "d1", "conversation_id": cid, "seq": 1})
    status, _, _ = await fetch(bob, media["url"])
    assert status == 200  # message 2 still carries it
    await change(a, {"type": "delete", "id": "d2", "conversation_id": cid, "seq": 2})
    for _ in range(100):
        status, _, _ = await fetch(bob, media["url"])
        if status == 404:
            break
        await asyncio.sleep(0.05)
    assert status == 404
    status, _, _ = await fetch(alice, media["url"])  # the uploader too: erased
    assert status == 404
