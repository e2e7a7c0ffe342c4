"""Rounds of sequencer snapshots, and the freezing of idle conversations, off the sequencer's path.

A round takes, at a quiet point (every event the sequencers applied is durable: between two of
the sequence agent's batches), each partition's dirty conversations and the events offset its
state is at, and encodes them in a thread; then, at the next quiet point, it copies those that
changed meanwhile (their first encoding may be torn; a copy of a state's containers is cheap and
consistent, ``copy_of``) and encodes the copies in a thread too, stamped with the offset of then.
The sequencer's loop only swaps sets and copies containers. It writes them and a checkpoint of the first offset in one transaction
(``streams/snapshots.py``). A snapshot thus never includes an event that is not durable, and
after a round every conversation's snapshot includes all its events up to the checkpoint. A
failed round puts its conversations back among the dirty ones, for the next round.

The sweep (every ``sequencer_idle_s``) freezes the conversations no event reached since the last
sweep: their encoded snapshot replaces their objects (``Sequencer.freeze``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from dataclasses import dataclass
from typing import Callable, Iterable

from chat.codec import default_codec
from chat.errors import SchemaError
from chat.events import BlocksSnapshot, SnapshotCheckpoint
from chat.settings import Settings
from infra.topics import SNAPSHOT_MAX_BYTES
from streams.model import ConversationState, Sequencer
from streams.snapshot_state import CHECKPOINT_KEY, blocks_key, blocks_snapshot, conversation_key, copy_of, freeze
from streams.snapshots import Record, SnapshotStore

log = logging.getLogger(__name__)

Sequencers = Callable[[], dict[int, Sequencer]]  # the recovered sequencers, by partition


@dataclass
class Taken:
    sequencer: Sequencer
    store: SnapshotStore
    upto: int
    conversations: set[str]
    blocks: dict[str, BlocksSnapshot | None]


class SnapshotWriter:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stores: dict[int, SnapshotStore] = {}
        self.fences: dict[int, int] = {}
        self.written: dict[int, int] = {}  # the last checkpoint written, per partition
        self.quiet = asyncio.Event()  # set between the sequence agent's batches
        self.quiet.set()
        self._swept = time.monotonic()

    async def take(self, partition: int, fence_offset: int) -> SnapshotStore:
        """The partition's snapshot store, its transactional id taken from whoever held it."""
        store = await asyncio.to_thread(SnapshotStore, self.settings, partition)
        await asyncio.to_thread(store.fence)
        old = self.stores.get(partition)
        self.stores[partition], self.fences[partition], self.written[partition] = store, fence_offset, -1
        if old is not None:
            await asyncio.to_thread(old.close)
        return store

    async def release(self, partition: int) -> None:
        store = self.stores.pop(partition, None)
        if store is not None:
            await asyncio.to_thread(store.close)

    async def _quiet_point(self) -> None:
        while not self.quiet.is_set():
            await self.quiet.wait()

    async def round(self, sequencers: Sequencers) -> int:
        """Write one round for every partition with changes; returns the conversations written."""
        await self._quiet_point()
        taken = self._take(sequencers())
        if not taken:
            return 0
        try:
            return await self._write_round(taken, sequencers)
        except BaseException:
            for t in taken.values():  # nothing of them was written: dirty still
                t.sequencer.dirty |= t.conversations
                t.sequencer.dirty_blocks |= set(t.blocks)
            raise

    async def _write_round(self, taken: dict[int, Taken], sequencers: Sequencers) -> int:
        encoded = await asyncio.to_thread(_encode, taken)
        await self._quiet_point()
        current, copies = sequencers(), {}
        for partition, t in list(taken.items()):
            if current.get(partition) is not t.sequencer or self.stores.get(partition) is not t.store:
                del taken[partition]
                continue
            # Changed while encoded (the encoding may be torn): copied now, at a quiet point.
            again = (t.conversations & t.sequencer.dirty) | {cid for cid, blob in encoded[partition].items()
                                                              if blob is None}
            t.sequencer.dirty -= again
            copies[partition] = ({cid: copy_of(t.sequencer.conversations[cid]) for cid in again
                                  if cid in t.sequencer.conversations}, t.sequencer.offset)
        if copies:
            for partition, blobs in (await asyncio.to_thread(_encode_copies, copies)).items():
                encoded[partition].update(blobs)
        rounds = {p: self._records(p, t, encoded[p]) for p, t in taken.items()}
        results = await asyncio.gather(*(asyncio.to_thread(taken[p].store.write, records)
                                         for p, (records, _) in rounds.items()), return_exceptions=True)
        written = 0
        for (partition, (_, checkpointed)), result in zip(rounds.items(), results):
            t = taken[partition]
            if isinstance(result, BaseException):
                log.warning("snapshot round of partition %d failed (%s): retried next round", partition, result)
                t.sequencer.dirty |= t.conversations
                t.sequencer.dirty_blocks |= set(t.blocks)
            elif checkpointed:
                self.written[partition] = t.upto
                written += len(t.conversations)
        return written

    def _take(self, sequencers: dict[int, Sequencer]) -> dict[int, Taken]:
        taken = {}
        for partition, sequencer in sequencers.items():
            store = self.stores.get(partition)
            unchanged = not sequencer.dirty and not sequencer.dirty_blocks
            if store is None or (unchanged and sequencer.offset <= self.written.get(partition, -1)):
                continue
            conversations, sequencer.dirty = sequencer.dirty, set()
            blocks, sequencer.dirty_blocks = sequencer.dirty_blocks, set()
            taken[partition] = Taken(sequencer, store, sequencer.offset, conversations,
                                     {cid: blocks_snapshot(sequencer.blocks, cid, sequencer.offset) for cid in blocks})
        return taken

    def _records(self, partition: int, t: Taken, encoded: dict[str, bytes | None]) -> tuple[Iterable[Record], bool]:
        """The round's records, made as they are written (a first round after a replay holds every
        conversation of the partition: no list of a million pairs besides the blobs), and whether
        the checkpoint is among them: conversations, blocks, and the checkpoint last (unless a
        record is too large: then the checkpoint cannot move past that conversation)."""
        codec = default_codec()
        blocks = [(blocks_key(cid), None if b is None else codec.encode(b, key=cid)) for cid, b in t.blocks.items()]
        too_big = {cid for cid, blob in encoded.items() if blob is not None and len(blob) > SNAPSHOT_MAX_BYTES}
        big_blocks = [key for key, value in blocks if value is not None and len(value) > SNAPSHOT_MAX_BYTES]
        missing = {cid for cid, blob in encoded.items() if blob is None}
        conversations = ((conversation_key(cid), blob) for cid, blob in encoded.items()
                         if blob is not None and cid not in too_big)
        if too_big or big_blocks or missing:  # the checkpoint cannot move past them: recovery replays from the last one
            t.sequencer.dirty |= missing | too_big
            log.error("snapshots over %d bytes (or not encoded) not written, checkpoint of partition %d held "
                      "back: %s", SNAPSHOT_MAX_BYTES, partition,
                      (sorted(too_big) + [k.decode() for k in big_blocks] + sorted(missing))[:5])
            return itertools.chain(conversations, [(k, v) for k, v in blocks if k not in big_blocks]), False
        checkpoint = SnapshotCheckpoint(partition=partition, upto=t.upto, worker_id=self.settings.worker_id,
                                        fence=self.fences.get(partition, -1), written_at=int(time.time() * 1000),
                                        conversations=len(t.conversations))
        return itertools.chain(conversations, blocks, [(CHECKPOINT_KEY, codec.encode(checkpoint, key=""))]), True

    async def sweep(self, sequencers: Sequencers, force: bool = False) -> int:
        """Freeze the conversations untouched since the last sweep; returns how many went cold."""
        if not force and time.monotonic() - self._swept < self.settings.sequencer_idle_s:
            return 0
        self._swept = time.monotonic()
        work = {}
        for partition, sequencer in sequencers().items():
            touched, sequencer.touched = sequencer.touched, set()
            idle = [cid for cid in sequencer.conversations if cid not in touched and cid not in sequencer.dirty]
            work[partition] = (sequencer, idle)
        frozen = await asyncio.to_thread(_freeze_all, work)
        current, moved = sequencers(), 0
        for partition, (sequencer, _) in work.items():
            if current.get(partition) is sequencer:
                moved += sequencer.freeze(frozen[partition])
        if moved:
            log.info("froze %d idle conversations in %.2fs", moved, time.monotonic() - self._swept)
        return moved

    async def close(self) -> None:
        for partition in list(self.stores):
            await self.release(partition)


def _encode(taken: dict[int, Taken]) -> dict[int, dict[str, bytes | None]]:
    """Each taken conversation's snapshot, or None where the loop changed it under the encoder."""
    out: dict[int, dict[str, bytes | None]] = {}
    for partition, t in taken.items():
        blobs = out[partition] = {}
        for cid in t.conversations:
            state = t.sequencer.conversations.get(cid)
            if state is None:
                # Cold and dirty (frozen by a recovery, ``freeze_idle``): its cold form is its
                # snapshot. (Gone altogether: nothing to write.)
                blob = t.sequencer.cold.get(cid)
                if blob is not None:
                    blobs[cid] = blob
                continue
            try:
                blobs[cid] = freeze(state, t.upto)
            except (RuntimeError, ValueError, TypeError, KeyError, SchemaError):  # changed size or shape mid-encoding
                blobs[cid] = None
    return out


def _encode_copies(copies: dict[int, tuple[dict[str, ConversationState], int]]) -> dict[int, dict[str, bytes | None]]:
    return {partition: {cid: freeze(state, upto) for cid, state in states.items()}
            for partition, (states, upto) in copies.items()}


def _freeze_all(work: dict[int, tuple[Sequencer, list[str]]]) -> dict[int, dict[str, bytes]]:
    out: dict[int, dict[str, bytes]] = {}
    for partition, (sequencer, idle) in work.items():
        blobs = out[partition] = {}
        for cid in idle:
            state = sequencer.conversations.get(cid)
            if state is None:
                continue
            try:
                blobs[cid] = freeze(state, sequencer.offset)
            except (RuntimeError, ValueError, TypeError, KeyError, SchemaError):
                continue  # touched meanwhile: stays hot
    return out
