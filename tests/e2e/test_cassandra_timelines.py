"""The running system with its timelines in Cassandra (``CHAT_TIMELINE_BACKEND=cassandra``): a
stream worker and a gateway as processes on the test broker, the ``cassandra_hosts`` node, a
keyspace of their own. Send, fan-out, history pages, sync after a reconnect, retention by TTL
and ``chat rebuild timelines``; the rows are checked in Cassandra itself too."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from typing import Any

import pytest

from tests.client import Client, eventually, full_history, page, sync, uid
from tests.support import ROOT, System

RETENTION_DAYS = "0.00005"  # 4.32 s


def cassandra_system(stack: Any, cassandra_hosts: str, base_dir: Any, **env: str) -> System:
    system = System(stack, base_dir, CHAT_TIMELINE_BACKEND="cassandra", CHAT_CASSANDRA_HOSTS=cassandra_hosts,
                    CHAT_CASSANDRA_KEYSPACE=f"e2e_{uuid.uuid4().hex[:12]}", **env)
    system.start_worker()
    system.start_gateway()
    return system


class Rows:
    """Plain CQL on a system's keyspace, beside the system (no retention filter)."""

    def __init__(self, system: System) -> None:
        from cassandra.cluster import Cluster

        from projections.timelines_cassandra import PROTOCOL_VERSION, contact_point

        self.keyspace = system.settings.cassandra_keyspace
        self.cluster = Cluster([contact_point(h) for h in system.settings.cassandra_host_list],
                               protocol_version=PROTOCOL_VERSION)
        self.session = self.cluster.connect()

    def of(self, cid: str) -> dict[int, str]:
        """seq -> body of every row stored for a conversation."""
        rows = self.session.execute(f"SELECT seq, body FROM {self.keyspace}.messages WHERE conversation_id = %s",
                                    (cid,))
        return {row.seq: row.body for row in rows}

    def execute(self, cql: str, *values: Any) -> None:
        self.session.execute(cql, values)

    def close(self, drop: bool = True) -> None:
        if drop:
            self.session.execute(f"DROP KEYSPACE IF EXISTS {self.keyspace}", timeout=60)
        self.cluster.shutdown()


@pytest.fixture(scope="module")
def system(stack, cassandra_hosts, tmp_path_factory):
    system = cassandra_system(stack, cassandra_hosts, tmp_path_factory.mktemp("e2e-cassandra"))
    yield system
    system.stop()


@pytest.fixture(scope="module")
def rows(system):
    rows = Rows(system)
    yield rows
    rows.close()


def now_ms() -> int:
    return time.time_ns() // 1_000_000




async def test_send_fan_out_history_and_sync(system, rows, session):
    assert system.settings.timeline_backend == "cassandra"
    alice = await Client.sign_in(session, system.url(), uid("alice"))
    bob = await Client.sign_in(session, system.url(), uid("bob"))
    cid = (await alice.create_group("on cassandra", [bob.user_id]))["conversation_id"]
    a1, b1 = await alice.device("phone"), await bob.device("phone")
    _, cursors = await sync(b1, {})
    for i in range(120):
        await a1.send_message(cid, f"m{i}", f"message {i}")
    acks = await a1.wait_for("ack", count=120)
    assert sorted(a["seq"] for a in acks) == list(range(1, 121))
    live = await b1.wait_for("message", lambda f: f["message"]["conversation_id"] == cid, count=120)
    assert [f["message"]["seq"] for f in live] == list(range(1, 121))  # fanned out, in order
    assert [f["message"]["body"] for f in live] == [f"message {i}" for i in range(120)]

    # History: pages of the newest 50, walked back to seq 1; the rows are in Cassandra.
    assert await page(bob, cid) == (list(range(71, 121)), True)
    assert await page(bob, cid, "?before_seq=71&limit=50") == (list(range(21, 71)), True)
    assert await page(bob, cid, "?before_seq=21&limit=50") == (list(range(1, 21)), False)
    assert await page(bob, cid, "?after_seq=100&limit=10") == (list(range(101, 111)), True)
    history = await full_history(bob, cid, page=37)
    assert [m["body"] for m in history] == [f"message {i}" for i in range(120)]
    assert await asyncio.to_thread(rows.of, cid) == {i + 1: f"message {i}" for i in range(120)}
    assert not system.settings.resolved_sqlite_path.exists()

    # Sync after a reconnect: what was sent meanwhile, from the store, then live again.
    await b1.close()
    for i in range(120, 130):
        await a1.send_message(cid, f"m{i}", f"message {i}")
    await a1.wait_for("ack", count=130)
    b1 = await bob.device("phone")
    replayed, cursors = await sync(b1, {cid: 120})
    assert [m["seq"] for m in replayed] == list(range(121, 131)) and cursors == {cid: 130}
    b2 = await bob.device("tablet")  # a new device: everything, from seq 1
    replayed, cursors = await sync(b2, {})
    assert [m["seq"] for m in replayed] == list(range(1, 131)) and cursors == {cid: 130}
    await a1.send_message(cid, "after", "after the sync")
    (frame,) = await b1.wait_for("message", lambda f: f["message"]["client_msg_id"] == "after")
    assert frame["message"]["seq"] == 131
    for device in (a1, b1, b2):
        await device.close()


def chat(system: System, *args: str, timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **system.env, "CHAT_LOG_FORMAT": "json"}
    return subprocess.run([sys.executable, "-m", "chat.cli", *args], env=env, cwd=ROOT, text=True,
                          capture_output=True, timeout=timeout)


async def test_rebuild_timelines_repairs_cassandra(system, rows, session):
    alice = await Client.sign_in(session, system.url(), uid("alice"))
    cids = [(await alice.create_group(f"rebuild {n}", []))["conversation_id"] for n in range(3)]
    a1 = await alice.device("phone")
    for cid in cids:
        for i in range(30):
            await a1.send_message(cid, f"{cid}-{i}", f"{cid} {i}")
    await a1.wait_for("ack", count=90)
    await eventually(lambda: all(len(rows.of(cid)) == 30 for cid in cids), 20, "90 rows in Cassandra")
    live = {cid: await asyncio.to_thread(rows.of, cid) for cid in cids}

    first, second, third = cids
    table = f"{rows.keyspace}.messages"
    for seq in range(11, 21):
        rows.execute(f"DELETE FROM {table} WHERE conversation_id = %s AND seq = %s", first, seq)
    rows.execute(f"UPDATE {table} SET body = 'tampered' WHERE conversation_id = %s AND seq = 3", second)
    rows.execute(f"DELETE FROM {table} WHERE conversation_id = %s AND seq = 5", third)
    rows.execute(f"UPDATE {table} SET body = 'tampered' WHERE conversation_id = %s AND seq = 7", third)
    assert {cid: rows.of(cid) for cid in cids} != live

    done = await asyncio.to_thread(chat, system, "rebuild", "timelines", "--no-progress")
    assert done.returncode == 0, done.stderr
    assert "timelines: rebuilt from" in done.stderr, done.stderr
    assert {cid: await asyncio.to_thread(rows.of, cid) for cid in cids} == live
    assert [m["seq"] for m in await full_history(alice, first)] == list(range(1, 31))
    await a1.send_message(first, "after-rebuild", "after the rebuild")  # the live projector goes on
    (ack,) = await a1.wait_for("ack", lambda f: f["client_msg_id"] == "after-rebuild")
    assert ack["seq"] == 31
    await eventually(lambda: 31 in rows.of(first), 10, "the message sent after the rebuild stored")
    await a1.close()


@pytest.fixture(scope="module")
def short_lived(stack, cassandra_hosts, tmp_path_factory):
    """A second system whose messages live 4.32 s (rows written with that TTL)."""
    system = cassandra_system(stack, cassandra_hosts, tmp_path_factory.mktemp("e2e-cassandra-ttl"),
                              CHAT_RETENTION_DAYS=RETENTION_DAYS)
    rows = Rows(system)
    yield system, rows
    system.stop()
    rows.close()


async def test_retention_by_ttl(short_lived, session):
    system, rows = short_lived
    retention_ms = system.settings.retention_ms
    alice = await Client.sign_in(session, system.url(), uid("alice"))
    bob = await Client.sign_in(session, system.url(), uid("bob"))
    cid = (await alice.create_group("short-lived", [bob.user_id]))["conversation_id"]
    a1 = await alice.device("phone")
    for i in range(5):
        await a1.send_message(cid, f"old{i}", f"old {i}")
    old_acks = await a1.wait_for("ack", count=5)
    assert [a["seq"] for a in old_acks] == [1, 2, 3, 4, 5]
    assert await page(alice, cid) == ([1, 2, 3, 4, 5], False)
    b1 = await bob.device("phone")
    replayed, cursors = await sync(b1, {})
    assert [m["seq"] for m in replayed] == [1, 2, 3, 4, 5] and cursors == {cid: 5}

    # Past retention: hidden at once (reads filter on sent_at), and gone once the TTL (whole
    # seconds, rounded up) has run out too.
    expiry_ms = max(a["sent_at"] for a in old_acks) + retention_ms
    await asyncio.sleep(max(0.0, (expiry_ms + 100 - now_ms()) / 1000))
    assert await page(alice, cid) == ([], False)
    replayed, _ = await sync(b1, {cid: 2})
    assert replayed == []
    await eventually(lambda: rows.of(cid) == {}, 3, "the rows expired by their TTL")

    # Newer messages: seq goes on; only they come back.
    for i in range(3):
        await a1.send_message(cid, f"new{i}", f"new {i}")
    new_acks = await a1.wait_for("ack", lambda f: f["client_msg_id"].startswith("new"), count=3)
    assert [a["seq"] for a in new_acks] == [6, 7, 8]
    assert await page(alice, cid) == ([6, 7, 8], False)
    assert await page(alice, cid, "?before_seq=7") == ([6], False)
    replayed, cursors = await sync(b1, {cid: 2})
    assert [m["seq"] for m in replayed] == [6, 7, 8] and cursors == {cid: 8}
    assert sorted(rows.of(cid)) == [6, 7, 8]
    assert now_ms() - min(a["sent_at"] for a in new_acks) < retention_ms, "too slow to check before expiry"
    for device in (a1, b1):
        await device.close()
