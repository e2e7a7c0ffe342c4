"""Receipts (watermarks, frames to every device) and the conversation list (activity order,
last message, unread from the read watermark) through the running system."""

from __future__ import annotations


import pytest

from tests.client import sign_in_users
from tests.support import System


@pytest.fixture(scope="module")
def system(stack, tmp_path_factory):
    system = System(stack, tmp_path_factory.mktemp("e2e-receipts"))
    system.start_worker()
    system.start_gateway()
    yield system
    system.stop()


async def listed(client):
    status, body = await client.call("GET", "/v1/conversations")
    assert status == 200
    return {c["conversation_id"]: c for c in body["conversations"]}, [c["conversation_id"] for c in body["conversations"]]


async def test_receipts_reach_every_device_and_only_move_forward(system, session):
    alice, bob = await sign_in_users(session, system.url(), "alice", "bob")
    cid = (await alice.create_group("g", [bob.user_id]))["conversation_id"]
    a1, b_phone, b_laptop = await alice.device("a1"), await bob.device("phone"), await bob.device("laptop")
    for i in range(5):
        await a1.send_message(cid, f"m{i}", f"hello {i}")
    await b_phone.wait_for("message", count=5)
    await b_phone.send({"type": "receipt", "conversation_id": cid, "seq": 5, "status": "delivered"})
    await b_laptop.send({"type": "receipt", "conversation_id": cid, "seq": 3, "status": "read"})
    for device in (a1, b_phone, b_laptop):  # the sender, and the reader's own other device
        await device.wait_for("receipt", lambda f: f["status"] == "read" and f["seq"] == 3)
        (delivered,) = await device.wait_for("receipt", lambda f: f["status"] == "delivered")
        assert delivered == {"type": "receipt", "conversation_id": cid, "user_id": bob.user_id, "seq": 5,
                             "status": "delivered"}
    await b_laptop.send({"type": "receipt", "conversation_id": cid, "seq": 2, "status": "read"})  # lower: nothing
    await b_laptop.send({"type": "receipt", "conversation_id": cid, "seq": 4, "status": "read"})
    await a1.wait_for("receipt", lambda f: f["status"] == "read" and f["seq"] == 4)
    assert [f["seq"] for f in a1.of_type("receipt", lambda f: f["status"] == "read")] == [3, 4]
    status, body = await alice.call("GET", f"/v1/conversations/{cid}/receipts")
    assert status == 200 and body["members"] == {
        alice.user_id: {"delivered_seq": 5, "read_seq": 5},  # the sender has read what she sent
        bob.user_id: {"delivered_seq": 5, "read_seq": 4}}
    await b_phone.send({"type": "receipt", "conversation_id": cid, "seq": 9, "status": "read"})
    (error,) = await b_phone.wait_for("error")
    assert error["code"] == "bad_request"
    await b_phone.send({"type": "receipt", "conversation_id": cid, "seq": "x", "status": "read"})
    await b_phone.wait_for("error", count=2)
    for d in (a1, b_phone, b_laptop):
        await d.close()


async def test_conversation_list_orders_by_activity_and_counts_unread(system, session):
    alice, bob = await sign_in_users(session, system.url(), "alice", "bob")
    older = (await alice.create_group("older", [bob.user_id]))["conversation_id"]
    newer = (await alice.create_group("newer", [bob.user_id]))["conversation_id"]
    a1, b1 = await alice.device("a1"), await bob.device("b1")
    for i in range(3):
        await a1.send_message(newer, f"n{i}", f"newer {i}")
    await a1.wait_for("ack", count=3)
    await a1.send_message(older, "o1", "x" * 300)
    await b1.wait_for("message", count=4)
    by_id, order = await listed(bob)
    assert order[:2] == [older, newer]  # the most recent activity first
    assert (by_id[older]["last_seq"], by_id[older]["unread"], by_id[newer]["unread"]) == (1, 1, 3)
    assert by_id[older]["last_message"]["body"] == "x" * 200 + "…"
    assert by_id[newer]["last_message"]["seq"] == 3 and by_id[newer]["name"] == "newer"
    await b1.send({"type": "receipt", "conversation_id": newer, "seq": 3, "status": "read"})
    await b1.wait_for("receipt", lambda f: f["conversation_id"] == newer)
    by_id, _ = await listed(bob)
    assert (by_id[newer]["unread"], by_id[older]["unread"]) == (0, 1)
    by_id, _ = await listed(alice)
    assert by_id[newer]["unread"] == 0  # her own messages are not unread
    await b1.send_message(newer, "reply", "read and answered")
    await a1.wait_for("message", lambda f: f["message"]["client_msg_id"] == "reply")
    by_id, order = await listed(alice)
    assert order[0] == newer and by_id[newer]["unread"] == 1
    status, _ = await alice.call("DELETE", f"/v1/conversations/{older}/members/{bob.user_id}")
    assert status == 204
    by_id, _ = await listed(bob)
    assert older not in by_id and newer in by_id
    await a1.close(), await b1.close()
