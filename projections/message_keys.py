"""The message keys: where the keys of sealed bodies live (``chat/sealing.py``), and the two
steps that use them, sealing a sequencer's batch before it reaches the log and opening a batch
read from the log.

Keys are key material, not a projection: nothing in the log can make them again, so ``chat
rebuild`` never touches them, and losing them loses the bodies (back them up with the log).
A message's keys (its body's, version 0, and each edit's, version ``change_seq``) are written
before the events that use them are published, destroyed when the message is deleted, and
expire with the message (``sent_at`` + retention).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from chat.events import Event, MessageAccepted, MessageEdited
from chat.sealing import KeyRef, MessageKey, new_key, seal, unseal
from chat.settings import Settings


class MessageKeyStore(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def put(self, keys: Sequence[MessageKey]) -> None:
        """Store keys; the last write wins. A sequencer rebuilt after a failed publish seals
        the seqs it gives again under new keys, and those events are the ones in the log."""

    async def get(self, refs: Sequence[KeyRef]) -> dict[KeyRef, bytes]:
        """The keys that exist and have not expired, of these refs."""

    async def destroy(self, messages: Sequence[tuple[str, int]]) -> None:
        """Destroy every key (all versions) of these (conversation_id, seq)."""

    async def sweep(self, now_ms: int | None = None) -> int:
        """Delete expired keys where the backend has no TTL; how many."""


def key_ref(event: MessageAccepted | MessageEdited) -> KeyRef:
    version = event.change_seq if isinstance(event, MessageEdited) else 0
    return KeyRef(event.conversation_id, event.seq, version)


def seal_batch(events: Sequence[Event], expiry_of: Any) -> tuple[list[Event], list[MessageKey]]:
    """Seal the bodies of a sequencer's output: each body under a new key of its own.
    ``expiry_of(event)``: when its message expires (ms). Events without a body pass as they are."""
    out: list[Event] = []
    keys: list[MessageKey] = []
    for event in events:
        if isinstance(event, (MessageAccepted, MessageEdited)) and event.sealed is None:
            ref, key = key_ref(event), new_key()
            keys.append(MessageKey(ref, key, expiry_of(event)))
            event = replace(event, body="", sealed=seal(key, ref, event.body))
        out.append(event)
    return out, keys


async def open_batch(store: MessageKeyStore, events: Sequence[Event]) -> list[Event]:
    """The events with their bodies opened. A body whose key is gone (the message was deleted,
    or has expired) opens as "" and stays sealed no more: it is erased."""
    refs = [key_ref(e) for e in events if isinstance(e, (MessageAccepted, MessageEdited)) and e.sealed is not None]
    if not refs:
        return list(events)
    keys = await store.get(refs)
    opened: list[Event] = []
    for e in events:
        if isinstance(e, (MessageAccepted, MessageEdited)) and e.sealed is not None:
            ref = key_ref(e)
            key = keys.get(ref)
            body = unseal(key, ref, e.sealed) if key is not None else None
            e = replace(e, body=body or "", sealed=None)
        opened.append(e)
    return opened


def keys_sqlite_path(timeline_path: Path) -> Path:
    """The key store's SQLite file, beside the timeline store's and apart from it, so that
    removing the timeline file to rebuild it never takes the keys."""
    return timeline_path.with_name(f"{timeline_path.stem}-keys{timeline_path.suffix or '.sqlite3'}")


def make_message_key_store(settings: Settings) -> MessageKeyStore:
    """The backend named by ``settings.timeline_backend`` (not opened yet)."""
    backend = settings.timeline_backend
    if backend == "sqlite":
        from projections.message_keys_sqlite import SqliteMessageKeyStore

        return SqliteMessageKeyStore(keys_sqlite_path(settings.resolved_sqlite_path))
    if backend == "cassandra":
        from projections.message_keys_cassandra import CassandraMessageKeyStore

        from chat.secure import cassandra_options

        return CassandraMessageKeyStore(settings.cassandra_host_list, settings.cassandra_keyspace,
                                        replication_factor=settings.cassandra_replicas,
                                        cluster_options=cassandra_options(settings))
    raise ValueError(f"unknown timeline_backend {backend!r} (expected 'sqlite' or 'cassandra')")
