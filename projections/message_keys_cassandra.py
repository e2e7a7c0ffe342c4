"""``MessageKeyStore`` on Cassandra (see ``projections.message_keys``); the schema is
``infra/cassandra/keys.cql``. Keys expire by TTL with their messages."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from chat.sealing import KeyRef, MessageKey
from projections.cassandra_session import CassandraSession
from projections.timelines import current_ms
from projections.timelines_cassandra import MAX_TTL_S
from projections.timelines_cassandra_cql import checked_keyspace


def statements_cql(keyspace: str) -> dict[str, str]:
    ks = checked_keyspace(keyspace)
    return {
        "insert": f"INSERT INTO {ks}.message_keys (conversation_id, seq, version, key) VALUES (?, ?, ?, ?) USING TTL ?",
        "key": f"SELECT key FROM {ks}.message_keys WHERE conversation_id = ? AND seq = ? AND version = ?",
        "destroy": f"DELETE FROM {ks}.message_keys WHERE conversation_id = ? AND seq = ?",
    }


class CassandraMessageKeyStore:
    def __init__(self, hosts: Sequence[str], keyspace: str, replication_factor: int = 1, *,
                 cluster_options: Mapping[str, Any] | None = None) -> None:
        self.cassandra = CassandraSession("Cassandra key store", hosts, checked_keyspace(keyspace), replication_factor,
                                          "keys.cql", statements_cql(keyspace), cluster_options=cluster_options)

    async def open(self) -> None:
        await self.cassandra.open()

    async def close(self) -> None:
        await self.cassandra.close()

    async def put(self, keys: Sequence[MessageKey]) -> None:
        now = current_ms()
        await asyncio.gather(*(
            self.cassandra.run("insert", k.ref.conversation_id, k.ref.seq, k.ref.version, k.key,
                               min(MAX_TTL_S, -(-(k.expires_at - now) // 1000)))
            for k in keys if k.expires_at > now))

    async def get(self, refs: Sequence[KeyRef]) -> dict[KeyRef, bytes]:
        unique = list(set(refs))
        rows = await asyncio.gather(*(self.cassandra.run("key", r.conversation_id, r.seq, r.version) for r in unique))
        return {ref: found[0][0] for ref, found in zip(unique, rows) if found}

    async def destroy(self, messages: Sequence[tuple[str, int]]) -> None:
        await asyncio.gather(*(self.cassandra.run("destroy", c, seq) for c, seq in set(messages)))

    async def sweep(self, now_ms: int | None = None) -> int:
        return 0  # keys expire by TTL
