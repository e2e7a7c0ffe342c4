"""``chat replay`` and ``chat rebuild`` on the real broker and Redis, against a running worker.

A few thousand events go through a real stream worker; the projections it builds live are
snapshotted, damaged, and rebuilt by the ``chat`` command (a subprocess, as an operator runs it)
while the worker keeps running; the rebuilt projections must equal the live ones row for row.
"""

from __future__ import annotations

import io
import os
import re
import sqlite3
import subprocess
import sys
import time
from typing import Any

import fastavro
from confluent_kafka import Producer
import orjson
import pytest
import redis as sync_redis

from chat import keys
from chat.codec import default_codec
from chat.events import (
    ConversationCreateRequested, MemberRemoveRequested, MembersAddRequested, MessageDeleteRequested,
    MessageEditRequested, MessageSendRequested, Origin, PresenceChanged, ReactionRequested, ReceiptRecordRequested,
)
from chat.ids import new_group_id
from chat.logread import BEGINNING, TopicReader
from projections import conversations, presence, receipts
from projections.shadow_redis import with_db
from tests.support import ROOT, CommandProducer, System

ORIGIN = Origin(gateway_id="gw-rebuild", device_id="d1")
CONVERSATIONS, MESSAGES_EACH = 20, 100  # 2,000 messages + membership, receipts and changes


def chat(system: System, *args: str, timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **system.env, "CHAT_LOG_FORMAT": "json"}
    return subprocess.run([sys.executable, "-m", "chat.cli", *args], env=env, cwd=ROOT, text=True,
                          capture_output=True, timeout=timeout)


@pytest.fixture(scope="module")
def system(stack, tmp_path_factory):
    system = System(stack, tmp_path_factory.mktemp("rebuild"))
    # Our Redis database may hold an earlier module's keys (databases are n % 16): the
    # comparisons below are of whole projections, so start from an empty one.
    client = sync_redis.Redis.from_url(system.settings.redis_url)
    client.flushdb()
    client.close()
    system.start_worker()
    yield system
    system.stop()


@pytest.fixture(scope="module")
def history(system) -> dict[str, Any]:
    """Conversations with messages, members added and removed, receipts; all projected."""
    producer = CommandProducer(system.settings)
    last: dict[str, tuple[str, int]] = {}
    for c in range(CONVERSATIONS):
        cid, alice, bob = new_group_id(), f"alice{c}", f"bob{c}"
        producer.send(ConversationCreateRequested(conversation_id=cid, kind="group", creator_id=alice,
                                                  member_ids=[bob], origin=ORIGIN, name=f"room {c}"))
        for i in range(1, MESSAGES_EACH + 1):
            producer.send(MessageSendRequested(conversation_id=cid, sender_id=(alice, bob)[i % 2],
                                               client_msg_id=f"m{i}", body=f"hello {i}", origin=ORIGIN))
        producer.send(ReceiptRecordRequested(conversation_id=cid, user_id=bob, seq=MESSAGES_EACH - 10,
                                             status="read", origin=ORIGIN))
        producer.send(MembersAddRequested(conversation_id=cid, user_id=alice, member_ids=[f"carol{c}"],
                                          origin=ORIGIN))
        if c % 2:
            producer.send(MemberRemoveRequested(conversation_id=cid, user_id=alice, member_id=bob, origin=ORIGIN))
        # Protocol 1.1: an edit, a reaction and a deletion (3 changes), and a reply that mentions.
        producer.send(MessageEditRequested(conversation_id=cid, user_id=alice, change_id="e", seq=2,
                                           body="hello two", origin=ORIGIN))
        producer.send(ReactionRequested(conversation_id=cid, user_id=alice, change_id="r", seq=2, emoji="👍",
                                        on=True, origin=ORIGIN))
        producer.send(MessageDeleteRequested(conversation_id=cid, user_id=alice, change_id="d", seq=4, origin=ORIGIN))
        producer.send(MessageSendRequested(conversation_id=cid, sender_id=alice, client_msg_id="last",
                                           body="bye", origin=ORIGIN, reply_to=2, mentions=[f"carol{c}"]))
        last[cid] = (alice, MESSAGES_EACH + 1)
    producer.flush()
    users = presence_history(system)
    wait_projected(system, last)
    wait_presence(system, users)
    return {"last": last, "messages": CONVERSATIONS * (MESSAGES_EACH + 1)}


def presence_history(system: System) -> dict[str, int]:
    """PresenceChanged events straight on the presence topic (as the presence agent writes them):
    each user online, offline, online again; some of them written out of order."""
    producer = Producer({"bootstrap.servers": system.settings.kafka_bootstrap, "partitioner": "murmur2_random",
                         "log_level": 0})
    codec, newest = default_codec(), {}
    for u in range(40):
        user, changes = f"user{u}", [("online", 1_000), ("offline", 2_000), ("online", 3_000)]
        if u % 3 == 0:
            changes.reverse()  # an older change after a newer one changes nothing
        for status, at in changes:
            event = PresenceChanged(user_id=user, status=status, last_seen=at + u, changed_at=at + u)
            producer.produce(system.settings.presence_topic, codec.encode(event, key=user), key=user.encode())
        newest[user] = 3_000 + u
    assert producer.flush(15) == 0
    return newest


def wait_presence(system: System, newest: dict[str, int], timeout: float = 60.0) -> None:
    client = sync_redis.Redis.from_url(system.settings.redis_url)
    deadline = time.monotonic() + timeout
    try:
        while any(client.hget(keys.presence(u), "changed_at") != str(at).encode() for u, at in newest.items()):
            assert time.monotonic() < deadline, "the worker did not project the presence topic in time"
            time.sleep(0.2)
    finally:
        client.close()


def wait_projected(system: System, last: dict[str, tuple[str, int]], timeout: float = 120.0) -> None:
    """Until each conversation's last message is in every projection (receipts are written last)."""
    client = sync_redis.Redis.from_url(system.settings.redis_url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            marks = [client.hget(keys.receipts(cid), f"{sender}|r") for cid, (sender, _) in last.items()]
            if all(m is not None and int(m) == seq for m, (_, seq) in zip(marks, last.values())):
                return
            assert time.monotonic() < deadline, "the worker did not project every conversation in time"
            time.sleep(0.2)
    finally:
        client.close()


def timeline_rows(system: System) -> list[tuple[Any, ...]]:
    with sqlite3.connect(system.settings.resolved_sqlite_path) as conn:
        return conn.execute("SELECT * FROM messages ORDER BY conversation_id, seq").fetchall()


def change_rows(system: System) -> list[tuple[Any, ...]]:
    with sqlite3.connect(system.settings.resolved_sqlite_path) as conn:
        return conn.execute("SELECT * FROM changes ORDER BY conversation_id, change_seq").fetchall()


def redis_state(system: System, module: Any) -> dict[str, Any]:
    """Every key the projection owns, with its value, whatever its Redis type."""
    client = sync_redis.Redis.from_url(system.settings.redis_url)
    state: dict[str, Any] = {}
    try:
        for pattern in module.SCAN_PATTERNS:
            for key in client.scan_iter(match=pattern, count=1000):
                name = key.decode()
                if not module.OWNED_KEYS.fullmatch(name):
                    continue
                kind = client.type(key).decode()
                state[name] = (client.hgetall(key) if kind == "hash" else
                               sorted(client.smembers(key)) if kind == "set" else client.get(key))
    finally:
        client.close()
    return state


def snapshot(system: System) -> dict[str, Any]:
    return {"timelines": timeline_rows(system), "changes": change_rows(system),
            "conversations": redis_state(system, conversations),
            "receipts": redis_state(system, receipts), "presence": redis_state(system, presence)}


def damage(system: System, cid: str) -> None:
    with sqlite3.connect(system.settings.resolved_sqlite_path) as conn:
        conn.execute("DELETE FROM messages WHERE conversation_id = ? AND seq > 50", (cid,))
        conn.execute("UPDATE messages SET body = 'tampered' WHERE seq = 3")
        conn.execute("INSERT INTO messages (conversation_id, seq, message_id, sender_id, client_msg_id, body, media,"
                     " sent_at, expires_at) VALUES ('g_ghost', 1, 'x', 'x', 'x', 'ghost', NULL, 1, 2)")
        conn.execute("UPDATE messages SET body = 'resurrected', deleted = 0 WHERE seq = 4")
        conn.execute("DELETE FROM changes WHERE change_seq = 2")
    client = sync_redis.Redis.from_url(system.settings.redis_url)
    try:
        client.delete(keys.conversation_members(cid), keys.receipts(cid))
        client.hset(keys.conversation_last(cid), "seq", 999)
        client.sadd(keys.user_conversations("mallory"), cid)
        client.hset(keys.receipts("g_ghost"), "mallory|r", 5)
        client.set("ratelimit:unrelated", 1)  # not a projection's key: must survive
        client.hset(keys.presence("user0"), mapping={"status": "offline", "changed_at": 9_999})
        client.delete(keys.presence("user1"))
        client.set(keys.presence_lease("user2"), 7)  # a live lease: not rebuilt, must survive
    finally:
        client.close()


def test_rebuild_all_equals_the_live_projections_row_for_row(system, history):
    live = snapshot(system)
    assert len(live["timelines"]) == history["messages"]
    assert len(live["changes"]) == 3 * CONVERSATIONS
    deleted = [row for row in live["timelines"] if row[1] == 4]
    assert all(row[5] == "" for row in deleted)  # erased bodies stay erased (column 5: body)
    assert len(live["conversations"]) >= CONVERSATIONS * 4 and len(live["receipts"]) == CONVERSATIONS
    assert len(live["presence"]) == 40
    damage(system, next(iter(history["last"])))
    assert snapshot(system) != live

    scratch = scratch_db(system)
    done = chat(system, "rebuild", "all", "--scratch-db", str(scratch), "--no-progress")
    assert done.returncode == 0, done.stderr
    assert "timelines: rebuilt from 2,080 events" in done.stderr, done.stderr
    assert "presence: rebuilt from 120 events" in done.stderr, done.stderr

    rebuilt = snapshot(system)
    for name in live:
        assert rebuilt[name] == live[name], f"{name} differs after the rebuild"
    client = sync_redis.Redis.from_url(system.settings.redis_url)
    assert client.get("ratelimit:unrelated") == b"1" and client.get(keys.presence_lease("user2")) == b"7"
    client.close()
    copy = sync_redis.Redis.from_url(with_db(system.settings.redis_url, scratch))
    assert copy.dbsize() == 0  # the copy is gone
    copy.close()


def test_rebuild_keeps_what_is_written_while_it_runs(system, history):
    producer = CommandProducer(system.settings)
    cid, alice = new_group_id(), "dora"
    producer.send(ConversationCreateRequested(conversation_id=cid, kind="group", creator_id=alice,
                                              member_ids=["eve"], origin=ORIGIN, name="during"))
    producer.flush()
    running = subprocess.Popen([sys.executable, "-m", "chat.cli", "rebuild", "all", "--no-progress",
                                "--scratch-db", str(scratch_db(system))],
                               env={**os.environ, **system.env}, cwd=ROOT, text=True, stderr=subprocess.PIPE)
    sent, edits = 0, []
    while running.poll() is None and sent < 2_000:
        sent += 1
        producer.send(MessageSendRequested(conversation_id=cid, sender_id=alice, client_msg_id=f"d{sent}",
                                           body="during", origin=ORIGIN))
        if sent % 20 == 0:  # and edits of earlier messages, live while the rebuild runs
            producer.send(MessageEditRequested(conversation_id=cid, user_id=alice, change_id=f"e{sent}",
                                               seq=sent - 10, body=f"edited {sent - 10}", origin=ORIGIN))
            edits.append(sent - 10)
            producer.flush()
    sent += 1  # a last message after the last edit: once it is projected, so is every edit
    producer.send(MessageSendRequested(conversation_id=cid, sender_id=alice, client_msg_id=f"d{sent}",
                                       body="during", origin=ORIGIN))
    producer.flush()
    assert running.wait(180) == 0, running.stderr.read() if running.stderr else ""
    wait_projected(system, {cid: (alice, sent)})
    rows = [r for r in timeline_rows(system) if r[0] == cid]
    assert [r[1] for r in rows] == list(range(1, sent + 1))  # none lost, none doubled
    assert len(timeline_rows(system)) == history["messages"] + sent
    edited = {r[1]: r[5] for r in rows if r[5] != "during"}
    assert edited == {n: f"edited {n}" for n in edits}  # no edit lost either
    assert len([r for r in change_rows(system) if r[0] == cid]) == len(edits)


def test_dry_run_counts_and_writes_nothing(system, history):
    before = snapshot(system)
    done = chat(system, "rebuild", "receipts", "--dry-run", "--no-progress")
    assert done.returncode == 0, done.stderr
    counted = re.search(r"receipts: would apply ([\d,]+) events \(MessageAccepted ([\d,]+)", done.stderr)
    assert counted and int(counted[2].replace(",", "")) >= history["messages"], done.stderr
    assert snapshot(system) == before


def test_rebuild_errors(system, history):
    unknown = chat(system, "rebuild", "everything")
    assert unknown.returncode == 2 and "invalid choice" in unknown.stderr
    same = chat(system, "rebuild", "receipts", "--scratch-db", str(live_db(system)))
    assert same.returncode == 2 and "live one" in same.stderr, same.stderr


def scratch_db(system: System) -> int:
    """A Redis database for the rebuild's copy, emptied first: it may hold keys of an earlier test
    module's system (databases are ``n % 16``), none of which runs any more."""
    db = (live_db(system) + 8) % 16
    client = sync_redis.Redis.from_url(with_db(system.settings.redis_url, db))
    client.flushdb()
    client.close()
    return db


def live_db(system: System) -> int:
    return int(system.settings.redis_url.rsplit("/", 1)[1])


def test_replay_writes_every_event_as_json_lines_and_avro(system, history, tmp_path):
    topic = system.settings.events_topic
    lines_path, avro_path = tmp_path / "events.jsonl", tmp_path / "events.avro"
    as_json = chat(system, "replay", "--topic", topic, "-o", str(lines_path))
    assert as_json.returncode == 0, as_json.stderr
    lines = [orjson.loads(line) for line in lines_path.read_bytes().splitlines()]
    accepted = [r for r in lines if r["type"] == "MessageAccepted"]
    assert len(accepted) >= history["messages"]
    cid = next(iter(history["last"]))
    ours = [r["event"]["seq"] for r in accepted if r["key"] == cid]
    assert ours == list(range(1, MESSAGES_EACH + 2))  # in log order
    # Bodies are opened with their keys; only the deleted ones (seq 4) cannot be.
    wrong = [r for r in accepted if r["key"] in history["last"] and bool(r["event"]["body"]) != (r["event"]["seq"] != 4)]
    assert not wrong, wrong[:3]
    assert all(r.get("body_erased", False) == (r["event"]["seq"] == 4) for r in accepted if r["key"] in history["last"])

    as_avro = chat(system, "replay", "--topic", topic, "--format", "avro", "-o", str(avro_path))
    assert as_avro.returncode == 0, as_avro.stderr
    with avro_path.open("rb") as f:
        records = list(fastavro.reader(f))
    by_place = {(r["partition"], r["offset"]): r for r in lines}  # partitions interleave differently
    assert sorted(by_place) == sorted((r["partition"], r["offset"]) for r in records)
    for record in records:
        line = by_place[(record["partition"], record["offset"])]
        assert (record["type"], record["key"]) == (line["type"], line["key"])
        if record["type"] == "MessageAccepted":
            assert record["event"] == line["event"]


def test_the_log_holds_no_body_in_the_clear_and_a_deleted_one_never_comes_back(system, history, tmp_path):
    """Every body on the events topic is sealed; a deleted message's key is destroyed, so
    neither the topic's bytes, nor ``chat replay``, nor ``chat rebuild`` can show it again."""
    topic = system.settings.events_topic
    with TopicReader(system.settings.kafka_bootstrap, topic) as reader:
        raw = b"".join(msg.value() for batch in reader.read(dict.fromkeys(reader.partitions, BEGINNING))
                       for msg in batch)
    assert raw.count(b"hello") == 0 and b"bye" not in raw  # sent, edited: all sealed

    replayed = chat(system, "replay", "--topic", topic, "--no-progress")
    assert replayed.returncode == 0, replayed.stderr
    lines = [orjson.loads(line) for line in replayed.stdout.splitlines()]
    cid = next(iter(history["last"]))
    mine = {(r["type"], r["event"]["seq"]): r["event"] for r in lines if r["key"] == cid and "seq" in r["event"]}
    assert mine[("MessageAccepted", 3)]["body"] == "hello 3"
    assert mine[("MessageEdited", 2)]["body"] == "hello two"
    assert mine[("MessageAccepted", 4)]["body"] == "" and "MessageDeleted" in {t for t, _ in mine}
    assert '"hello 4"' not in replayed.stdout
    sealed = chat(system, "replay", "--topic", topic, "--conversation", cid, "--sealed", "--no-progress")
    assert "hello" not in sealed.stdout and '"sealed":{"nonce"' in sealed.stdout

    done = chat(system, "rebuild", "timelines", "--no-progress")
    assert done.returncode == 0, done.stderr
    rows = {(row[0], row[1]): row[5] for row in timeline_rows(system)}
    assert rows[(cid, 3)] == "hello 3" and rows[(cid, 2)] == "hello two" and rows[(cid, 4)] == ""
    assert not any(body == "hello 4" for body in rows.values())


def search_rows(system: System) -> list[tuple[Any, ...]]:
    from projections.search import search_sqlite_path

    with sqlite3.connect(search_sqlite_path(system.settings.resolved_sqlite_path)) as conn:
        return conn.execute("SELECT conversation_id, seq, body, words FROM search_docs"
                            " ORDER BY conversation_id, seq").fetchall()


def test_rebuild_search_makes_the_index_again_without_deleted_messages(system, history):
    live = search_rows(system)
    cid = next(iter(history["last"]))
    mine = {seq: body for c, seq, body, _ in live if c == cid}
    assert mine[2] == "hello two" and 4 not in mine and mine[3] == "hello 3"
    from projections.search import search_sqlite_path
    with sqlite3.connect(search_sqlite_path(system.settings.resolved_sqlite_path)) as conn:
        conn.execute("UPDATE search_docs SET body = 'tampered' WHERE seq = 3")
        conn.execute("DELETE FROM search_docs WHERE seq = 5")
    assert search_rows(system) != live

    done = chat(system, "rebuild", "search", "--no-progress")
    assert done.returncode == 0, done.stderr
    assert f"-> {len(live):,} rows/keys" in done.stderr, done.stderr
    assert search_rows(system) == live


def test_replay_filters_by_conversation_and_offsets(system, history):
    topic, cid = system.settings.events_topic, next(iter(history["last"]))
    one = chat(system, "replay", "--topic", topic, "--conversation", cid, "--no-progress")
    assert one.returncode == 0, one.stderr
    records = [orjson.loads(line) for line in one.stdout.splitlines()]
    assert {r["key"] for r in records} == {cid} and len(records) >= MESSAGES_EACH + 3
    partition = records[0]["partition"]
    window = chat(system, "replay", "--topic", topic, "--partition", str(partition), "--from-offset", "5",
                  "--to-offset", "15", "--no-progress")
    assert window.returncode == 0, window.stderr
    assert [orjson.loads(line)["offset"] for line in window.stdout.splitlines()] == list(range(5, 15))
    assert "replayed 10 of 10 events" in window.stderr


def test_replay_and_topics_errors(system, history):
    unknown = chat(system, "replay", "--topic", "no.such.topic", "--no-progress")
    assert unknown.returncode == 4 and "no topic 'no.such.topic'" in unknown.stderr
    bad_time = chat(system, "replay", "--topic", system.settings.events_topic, "--from-time", "yesterday")
    assert bad_time.returncode == 2 and "ISO 8601" in bad_time.stderr
    away = subprocess.run([sys.executable, "-m", "chat.cli", "topics"], cwd=ROOT, text=True, capture_output=True,
                          env={**os.environ, **system.env, "CHAT_KAFKA_BOOTSTRAP": "127.0.0.1:1"}, timeout=60)
    assert away.returncode == 3 and "unreachable" in away.stderr
    usage = chat(system, "replay")
    assert usage.returncode == 2 and "--topic" in usage.stderr


def test_topics_lists_partitions_offsets_and_agent_lag(system, history):
    done = chat(system, "topics")
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()[1:]]
    events = [r for r in rows if r[0] == system.settings.events_topic]
    assert len(events) == system.settings.partitions
    assert all(r[4] == "project" and r[5] == system.settings.app_id for r in events)
    assert sum(int(r[3]) for r in events) > history["messages"]  # high watermarks
    assert any(r[6] != "-" for r in events)  # the worker has committed offsets


def test_replay_by_time(system, history):
    topic = system.settings.events_topic
    everything = chat(system, "replay", "--topic", topic, "--from-time", "2000-01-01T00:00:00Z",
                      "--no-progress")
    assert everything.returncode == 0, everything.stderr
    stamps = sorted(orjson.loads(line)["timestamp"] for line in everything.stdout.splitlines())
    assert len(stamps) >= history["messages"]
    middle = stamps[len(stamps) // 2]
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(middle / 1000)) + f".{middle % 1000:03d}Z"
    later = chat(system, "replay", "--topic", topic, "--from-time", iso, "--no-progress")
    assert later.returncode == 0, later.stderr
    got = [orjson.loads(line)["timestamp"] for line in later.stdout.splitlines()]
    assert got and min(got) >= middle and len(got) == sum(1 for s in stamps if s >= middle)
    earlier = chat(system, "replay", "--topic", topic, "--to-time", iso, "--no-progress")
    got = [orjson.loads(line)["timestamp"] for line in earlier.stdout.splitlines()]
    assert got and max(got) <= middle
