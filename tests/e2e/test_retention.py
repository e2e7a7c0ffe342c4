"""Retention with a short window (~3.5 s): expired messages never come back from history or
sync, `has_more` does not count them, seq continues, and the embedded store's sweep deletes them."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest

from projections.timelines_sqlite import SqliteTimelineStore
from tests.client import Client, eventually, page, sync, uid
from tests.support import System

RETENTION_DAYS = "0.00004"  # 3.456 s


@pytest.fixture(scope="module")
def system(stack, tmp_path_factory):
    system = System(stack, tmp_path_factory.mktemp("e2e-retention"),
                    CHAT_RETENTION_DAYS=RETENTION_DAYS, CHAT_SWEEP_INTERVAL_S="1")
    system.start_worker()
    system.start_gateway()
    yield system
    system.stop()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def stored_seqs(system: System, cid: str) -> list[int]:
    """The rows physically in the SQLite file, expired or not."""
    with sqlite3.connect(system.settings.resolved_sqlite_path) as db:
        return [r[0] for r in db.execute("SELECT seq FROM messages WHERE conversation_id = ? ORDER BY seq", (cid,))]


async def raw_page(system: System, cid: str) -> list[int]:
    """The same through the store itself, with a retention long enough to see every row."""
    store = SqliteTimelineStore(system.settings.resolved_sqlite_path, retention_ms=10 ** 12)
    await store.open()
    try:
        return [m.seq for m in (await store.page(cid, after_seq=0, limit=200)).messages]
    finally:
        await store.close()




async def test_expired_messages_never_come_back(system, session):
    retention_ms = system.settings.retention_ms
    assert 3000 < retention_ms < 4000
    alice = await Client.sign_in(session, system.url(), uid("alice"))
    bob = await Client.sign_in(session, system.url(), uid("bob"))
    cid = (await alice.create_group("short-lived", [bob.user_id]))["conversation_id"]
    a1 = await alice.device("phone")
    for i in range(5):
        await a1.send_message(cid, f"old{i}", f"old {i}")
    old_acks = await a1.wait_for("ack", count=5)
    assert [a["seq"] for a in old_acks] == [1, 2, 3, 4, 5]
    old_sent = max(a["sent_at"] for a in old_acks)

    # Within retention: history, sync and the file all have them.
    assert await page(alice, cid) == ([1, 2, 3, 4, 5], False)
    b1 = await bob.device("phone")
    replayed, cursors = await sync(b1, {})
    assert [m["seq"] for m in replayed] == [1, 2, 3, 4, 5] and cursors == {cid: 5}
    assert stored_seqs(system, cid) == [1, 2, 3, 4, 5]

    # Past retention: nothing, whether or not the sweep has run yet.
    await asyncio.sleep(max(0.0, (old_sent + retention_ms + 100 - now_ms()) / 1000))
    assert await page(alice, cid) == ([], False)
    assert await page(alice, cid, "?limit=2") == ([], False)
    replayed, _ = await sync(b1, {cid: 2})
    assert replayed == []
    print(f"\n[retention] rows in the file when history first read empty: {stored_seqs(system, cid)}")
    status, listed = await alice.call("GET", "/v1/conversations")
    (item,) = [c for c in listed["conversations"] if c["conversation_id"] == cid]
    print(f"[retention] conversation list after expiry: last_seq {item['last_seq']}, unread {item['unread']}, "
          f"last_message {item['last_message'] and item['last_message']['body']!r}")
    await eventually(lambda: stored_seqs(system, cid) == [], 4, "the sweep deleting the expired rows")
    swept_after_ms = now_ms() - (old_sent + retention_ms)
    assert await raw_page(system, cid) == []

    # Newer messages: seq continues; only they come back; has_more ignores the expired ones.
    for i in range(3):
        await a1.send_message(cid, f"new{i}", f"new {i}")
    new_acks = await a1.wait_for("ack", lambda f: f["client_msg_id"].startswith("new"), count=3)
    assert [a["seq"] for a in new_acks] == [6, 7, 8]
    new_sent = min(a["sent_at"] for a in new_acks)
    status, body = await alice.call("GET", f"/v1/conversations/{cid}/messages")
    assert [m["body"] for m in body["messages"]] == ["new 0", "new 1", "new 2"] and body["has_more"] is False
    assert await page(alice, cid, "?limit=2") == ([7, 8], True)
    assert await page(alice, cid, "?limit=3") == ([6, 7, 8], False)
    assert await page(alice, cid, "?before_seq=7") == ([6], False)  # only expired ones remain before 6
    assert await page(alice, cid, "?before_seq=6") == ([], False)
    assert await page(alice, cid, "?after_seq=0") == ([6, 7, 8], False)
    assert await page(alice, cid, "?after_seq=0&limit=1") == ([6], True)
    b2 = await bob.device("tablet")
    replayed, cursors = await sync(b2, {})
    assert [m["seq"] for m in replayed] == [6, 7, 8] and cursors == {cid: 8}
    replayed, cursors = await sync(b1, {cid: 2})
    assert [m["seq"] for m in replayed] == [6, 7, 8] and cursors == {cid: 8}
    assert stored_seqs(system, cid) == [6, 7, 8]
    assert await raw_page(system, cid) == [6, 7, 8]
    checked_after_ms = now_ms() - new_sent
    assert checked_after_ms < retention_ms, (
        f"the checks of the new messages took {checked_after_ms} ms, past their own retention: the test "
        f"is too slow for this machine, not a product failure")

    # And once they expire too: nothing again, rows gone, seq still continues.
    await asyncio.sleep(max(0.0, (max(a["sent_at"] for a in new_acks) + retention_ms + 100 - now_ms()) / 1000))
    assert await page(alice, cid) == ([], False)
    replayed, _ = await sync(b2, {})
    assert replayed == []
    await eventually(lambda: stored_seqs(system, cid) == [], 4, "the sweep deleting the newer rows")
    await a1.send_message(cid, "last", "after everything expired")
    (ack,) = await a1.wait_for("ack", lambda f: f["client_msg_id"] == "last")
    assert ack["seq"] == 9
    assert await page(alice, cid) == ([9], False)
    print(f"[retention] window {retention_ms} ms; expired rows swept {swept_after_ms} ms after expiry; "
          f"new messages checked {checked_after_ms} ms after sending")
    for device in (a1, b1, b2):
        await device.close()


async def test_conversation_list_does_not_show_an_expired_message(system, session):
    alice = await Client.sign_in(session, system.url(), uid("alice"))
    cid = (await alice.create_group("list", []))["conversation_id"]
    status, ack = await alice.call("POST", f"/v1/conversations/{cid}/messages",
                                   json={"client_msg_id": "m1", "body": "soon gone"})
    assert status == 202
    await asyncio.sleep(max(0.0, (ack["sent_at"] + system.settings.retention_ms + 100 - now_ms()) / 1000))
    assert await page(alice, cid) == ([], False)
    status, listed = await alice.call("GET", "/v1/conversations")
    (item,) = [c for c in listed["conversations"] if c["conversation_id"] == cid]
    assert item["last_message"] is None, f"an expired message is still shown: {item['last_message']}"
    assert (item["last_seq"], item["unread"]) == (1, 0)
