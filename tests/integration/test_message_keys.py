"""The message key store contract, on SQLite and on Cassandra: keys are found until their
message is deleted or expires, and never after; opening a batch erases what has no key."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from chat.events import MessageAccepted, MessageEdited, Origin
from chat.sealing import KeyRef, MessageKey, new_key
from chat.settings import Settings
from projections.message_keys import MessageKeyStore, open_batch, seal_batch
from projections.timelines import current_ms

HOUR_MS = 3_600_000


def conv() -> str:
    return f"c-{uuid.uuid4().hex[:12]}"


def accepted(c: str, seq: int, body: str) -> MessageAccepted:
    return MessageAccepted(conversation_id=c, seq=seq, message_id=f"m{seq}", sender_id="alice", client_msg_id=f"k{seq}",
                           body=body, sent_at=current_ms(), origin=Origin(gateway_id="g1"))


class MessageKeyStoreContract:
    @pytest_asyncio.fixture
    async def store(self) -> AsyncIterator[MessageKeyStore]:
        raise NotImplementedError
        yield  # pragma: no cover

    async def test_put_get_and_the_last_write_wins(self, store: MessageKeyStore) -> None:
        c, later = conv(), current_ms() + HOUR_MS
        k1, k2, k3 = new_key(), new_key(), new_key()
        await store.put([MessageKey(KeyRef(c, 1), k1, later), MessageKey(KeyRef(c, 1, 3), k2, later)])
        assert await store.get([KeyRef(c, 1), KeyRef(c, 1, 3), KeyRef(c, 2)]) == {KeyRef(c, 1): k1, KeyRef(c, 1, 3): k2}
        await store.put([MessageKey(KeyRef(c, 1), k3, later)])
        assert await store.get([KeyRef(c, 1)]) == {KeyRef(c, 1): k3}

    async def test_destroy_takes_every_version_of_a_message_and_nothing_else(self, store: MessageKeyStore) -> None:
        c, later = conv(), current_ms() + HOUR_MS
        refs = [KeyRef(c, 1), KeyRef(c, 1, 2), KeyRef(c, 1, 5), KeyRef(c, 2)]
        await store.put([MessageKey(r, new_key(), later) for r in refs])
        await store.destroy([(c, 1)])
        assert set(await store.get(refs)) == {KeyRef(c, 2)}

    async def test_an_expired_key_is_never_found(self, store: MessageKeyStore) -> None:
        c = conv()
        await store.put([MessageKey(KeyRef(c, 1), new_key(), current_ms() + 1_500),
                         MessageKey(KeyRef(c, 2), new_key(), current_ms() - 1)])
        assert set(await store.get([KeyRef(c, 1), KeyRef(c, 2)])) == {KeyRef(c, 1)}
        await asyncio.sleep(2.1)
        await store.sweep()
        assert await store.get([KeyRef(c, 1)]) == {}

    async def test_open_batch_opens_bodies_and_erases_those_without_a_key(self, store: MessageKeyStore) -> None:
        c = conv()
        edit = MessageEdited(conversation_id=c, seq=1, change_seq=1, change_id="e", user_id="alice", body="v2",
                             edited_at=current_ms(), origin=Origin(gateway_id="g1"))
        sealed, keys = seal_batch([accepted(c, 1, "v1"), accepted(c, 2, "two"), edit], lambda e: current_ms() + HOUR_MS)
        await store.put(keys)
        assert [e.body for e in await open_batch(store, sealed)] == ["v1", "two", "v2"]
        await store.destroy([(c, 1)])
        opened = await open_batch(store, sealed)
        assert [(e.body, e.sealed) for e in opened] == [("", None), ("two", None), ("", None)]


class TestSqliteMessageKeyStore(MessageKeyStoreContract):
    @pytest_asyncio.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[MessageKeyStore]:
        from projections.message_keys_sqlite import SqliteMessageKeyStore

        store = SqliteMessageKeyStore(tmp_path / "t-keys.sqlite3")
        await store.open()
        yield store
        await store.close()

    async def test_a_destroyed_key_is_not_left_in_the_file(self, tmp_path: Path) -> None:
        from projections.message_keys_sqlite import SqliteMessageKeyStore

        path = tmp_path / "k.sqlite3"
        store = SqliteMessageKeyStore(path)
        await store.open()
        key = b"K" * 32
        await store.put([MessageKey(KeyRef("c1", 1), key, current_ms() + HOUR_MS)])
        await store.destroy([("c1", 1)])
        await store.sweep()  # checkpoints the WAL into the file
        await store.close()
        held = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("k.sqlite3"))
        assert key not in held


class TestCassandraMessageKeyStore(MessageKeyStoreContract):
    @pytest.fixture(scope="class")
    @classmethod
    def keyspace(cls, cassandra_hosts: str) -> Iterator[tuple[str, str]]:
        ks = f"chat_test_{uuid.uuid4().hex[:12]}"
        yield cassandra_hosts, ks
        from cassandra.cluster import Cluster

        from projections.timelines_cassandra import PROTOCOL_VERSION, contact_point

        settings = Settings(cassandra_hosts=cassandra_hosts)
        cluster = Cluster(contact_points=[contact_point(h) for h in settings.cassandra_host_list],
                          protocol_version=PROTOCOL_VERSION)
        try:
            cluster.connect().execute(f"DROP KEYSPACE IF EXISTS {ks}", timeout=60)
        finally:
            cluster.shutdown()

    @pytest_asyncio.fixture
    async def store(self, keyspace: tuple[str, str]) -> AsyncIterator[Any]:
        from projections.message_keys_cassandra import CassandraMessageKeyStore

        hosts, ks = keyspace
        store = CassandraMessageKeyStore(Settings(cassandra_hosts=hosts).cassandra_host_list, ks)
        await store.open()
        yield store
        await store.close()
