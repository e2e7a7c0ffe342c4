"""A snapshot round (streams/snapshot_writer.py): what it takes, when, and with which offset.
The store is a recording stand-in here; tests/integration/test_snapshot_recovery.py runs the
real one on Kafka."""

from __future__ import annotations

import asyncio
from typing import Iterable

from chat.codec import default_codec
from chat.errors import Unavailable
from chat.events import ConversationCreated, Member, MessageAccepted, Origin
from chat.settings import Settings
from streams.model import Sequencer
from streams.snapshot_state import CHECKPOINT_KEY, thaw
from streams.snapshot_writer import SnapshotWriter

ORIGIN = Origin("gw")


class Recording:
    def __init__(self, fail: bool = False) -> None:
        self.rounds: list[list[tuple[bytes, bytes | None]]] = []
        self.fail = fail

    def write(self, records: Iterable[tuple[bytes, bytes | None]]) -> None:
        """Consumes the round's records as ``SnapshotStore.write`` does (they may be made lazily)."""
        if self.fail:
            raise Unavailable("fenced")
        self.rounds.append(list(records))

    def close(self) -> None:
        pass


def accepted(seq: int) -> MessageAccepted:
    return MessageAccepted(conversation_id="g1", seq=seq, message_id=f"m{seq}", sender_id="alice",
                           client_msg_id=f"c{seq}", body="", sent_at=1_000 + seq, origin=ORIGIN)


def sequencer() -> Sequencer:
    seq = Sequencer(thaw=thaw)
    seq.apply(ConversationCreated(conversation_id="g1", kind="group", name="", description="",
                                  members=[Member("alice", "admin")], created_by="alice", created_at=1, origin=ORIGIN))
    seq.offset = 10
    return seq


def writer_with(store: Recording) -> SnapshotWriter:
    writer = SnapshotWriter(Settings(worker_id="w"))
    writer.stores[0] = store  # type: ignore[assignment]
    return writer


def test_a_round_waits_until_the_batch_is_durable_and_stamps_its_offset():
    async def run() -> None:
        seq, store = sequencer(), Recording()
        writer = writer_with(store)
        writer.quiet.clear()  # a batch in flight: its event is applied, not yet durable
        seq.apply(accepted(1))
        task = asyncio.create_task(writer.round(lambda: {0: seq}))
        await asyncio.sleep(0.05)
        assert store.rounds == [] and seq.dirty == {"g1"}  # nothing taken meanwhile
        seq.offset = 11  # the event is durable at offset 11
        writer.quiet.set()
        assert await task == 1
        (records,) = store.rounds
        assert [key for key, _ in records] == [b"g1", CHECKPOINT_KEY]
        snapshot = default_codec().decode(records[0][1]).event
        checkpoint = default_codec().decode(records[1][1]).event
        assert (snapshot.upto, snapshot.last_seq, checkpoint.upto, checkpoint.worker_id) == (11, 1, 11, "w")
        assert not seq.dirty
        assert await writer.round(lambda: {0: seq}) == 0 and len(store.rounds) == 1  # nothing changed since

    asyncio.run(run())


def test_a_failed_round_leaves_its_conversations_dirty_for_the_next():
    async def run() -> None:
        seq = sequencer()
        writer = writer_with(Recording(fail=True))
        assert await writer.round(lambda: {0: seq}) == 0
        assert seq.dirty == {"g1"} and writer.written.get(0, -1) == -1  # no checkpoint written
        store = writer.stores[0] = Recording()  # type: ignore[assignment]
        assert await writer.round(lambda: {0: seq}) == 1
        assert [key for key, _ in store.rounds[0]] == [b"g1", CHECKPOINT_KEY]

    asyncio.run(run())


def test_a_conversation_changed_while_encoded_is_written_as_of_the_next_quiet_point(monkeypatch):
    """Its first encoding may be torn: the round copies it at the next quiet point and writes
    that, stamped with the offset of then (the checkpoint keeps the first offset)."""
    import streams.snapshot_writer as snapshot_writer

    seq, store = sequencer(), Recording()
    encode = snapshot_writer._encode

    def encode_then_change(taken):  # the sequence agent goes on while the thread encodes
        blobs = encode(taken)
        seq.apply(accepted(1))
        seq.offset = 12
        return blobs

    monkeypatch.setattr(snapshot_writer, "_encode", encode_then_change)
    assert asyncio.run(writer_with(store).round(lambda: {0: seq})) == 1
    (records,) = store.rounds
    snapshot = default_codec().decode(records[0][1]).event
    assert (snapshot.upto, snapshot.last_seq) == (12, 1)
    assert default_codec().decode(records[-1][1]).event.upto == 10
    assert not seq.dirty
