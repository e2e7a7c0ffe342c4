"""Retention with a short window: expired messages never come back from history or sync, the
embedded store's sweep deletes them, and seq continues."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid

import aiohttp
import pytest
import pytest_asyncio

from tests.client import Client
from tests.support import System

RETENTION_S = 3.0


@pytest.fixture(scope="module")
def system(stack, tmp_path_factory):
    system = System(stack, tmp_path_factory.mktemp("e2e-retention"),
                    CHAT_RETENTION_DAYS=str(RETENTION_S / 86_400), CHAT_SWEEP_INTERVAL_S="1")
    system.start_worker()
    system.start_gateway()
    yield system
    system.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


def stored_seqs(system, cid):
    with sqlite3.connect(system.settings.resolved_sqlite_path) as db:
        return [r[0] for r in db.execute("SELECT seq FROM messages WHERE conversation_id = ? ORDER BY seq", (cid,))]


async def test_expired_messages_are_gone_from_history_sync_and_store(system, session):
    alice = await Client.sign_in(session, system.url(), f"alice-{uuid.uuid4().hex[:6]}")
    cid = (await alice.create_group("short-lived", []))["conversation_id"]
    a1 = await alice.device("a1")
    for i in range(3):
        await a1.send_message(cid, f"old{i}", f"old {i}")
    await a1.wait_for("ack", count=3)
    status, page = await alice.call("GET", f"/v1/conversations/{cid}/messages")
    assert [m["seq"] for m in page["messages"]] == [1, 2, 3]

    await asyncio.sleep(RETENTION_S + 1.5)  # past the retention, and at least one sweep
    for i in range(2):
        await a1.send_message(cid, f"new{i}", f"new {i}")
    acks = await a1.wait_for("ack", lambda f: f["client_msg_id"].startswith("new"), count=2)
    assert [a["seq"] for a in acks] == [4, 5]  # seq continues after expiry

    status, page = await alice.call("GET", f"/v1/conversations/{cid}/messages")
    assert [m["body"] for m in page["messages"]] == ["new 0", "new 1"] and page["has_more"] is False
    status, page = await alice.call("GET", f"/v1/conversations/{cid}/messages?before_seq=4")
    assert page == {"messages": [], "has_more": False}
    await a1.wait_for("message", lambda f: f["message"]["seq"] == 5)
    mark = len(a1.frames)
    await a1.send({"type": "sync", "cursors": {cid: 0}})
    (synced,) = await a1.wait_for("synced")
    replayed = [f["message"]["seq"] for f in a1.frames[mark:] if f.get("type") == "message"]
    assert replayed == [4, 5] and synced["cursors"][cid] == 5
    assert stored_seqs(system, cid) == [4, 5]  # the sweep deleted the expired rows
    await a1.close()
