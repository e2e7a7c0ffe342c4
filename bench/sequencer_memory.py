"""Resident memory of one sequencer serving N mostly idle conversations, in-process.

    .venv/bin/python -m bench.sequencer_memory [--conversations 1000000] [--messages 2]

Fills a ``streams.model.Sequencer`` as a worker's would be after serving them: per conversation
a ``ConversationCreated`` (a direct conversation of 2 members, or a group of 3 every third one,
from a pool of users ten times smaller than the conversations), ``--messages`` accepted messages
and a read receipt, applied through ``Sequencer.apply`` as recovery applies the log. Every
``--sweep-every`` conversations the worker's idle sweep runs (``SnapshotWriter.sweep``, as its
timer does every ``sequencer_idle_s``): the conversations untouched since the last sweep go cold,
kept as their encoded snapshot. ``--hot`` never sweeps: every state stays objects. Prints the
process's RSS before and after (``/proc/self/status`` VmRSS) and per conversation. The figures
are in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import time

from chat.events import ConversationCreated, Event, Member, MessageAccepted, Origin, ReceiptRecorded
from chat.settings import Settings
from streams.model import Sequencer
from streams.snapshot_state import thaw
from streams.snapshot_writer import SnapshotWriter

ORIGIN = Origin(gateway_id="bench", device_id="d")


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def conversation_events(c: int, conversations: int, messages: int, now_ms: int) -> list[Event]:
    """Conversation ``c``'s events as a worker's log holds them after serving it: its creation
    (a direct conversation of 2 members, or a group of 3 every third one, from a pool of users
    ten times smaller than the conversations), ``messages`` accepted messages and a read receipt."""
    users = max(10, conversations // 10)
    # User ids come off the wire as fresh strings for every event, as decoding makes them.
    members = [f"user-{(c * 7 + k * 13) % users:07d}" for k in range(3 if c % 3 == 0 else 2)]
    cid = conversation_id(c)
    events: list[Event] = [ConversationCreated(
        conversation_id=cid, kind="group" if len(members) == 3 else "direct", name="", description="",
        members=[Member("".join(u), "member") for u in members], created_by=members[0], created_at=now_ms,
        origin=ORIGIN)]
    for seq in range(1, messages + 1):
        events.append(MessageAccepted(
            conversation_id=cid, seq=seq, message_id=f"01J{c:013d}{seq:010d}",
            sender_id="".join(members[seq % len(members)]), client_msg_id=f"cm-{c:08d}-{seq}-{'y' * 20}", body="",
            sent_at=now_ms + seq, origin=ORIGIN))
    events.append(ReceiptRecorded(conversation_id=cid, user_id="".join(members[-1]), seq=messages, status="read",
                                  recorded_at=now_ms + messages))
    return events


def conversation_id(c: int) -> str:
    return f"g_{c:08d}_{'x' * 12}"


def first_member(c: int, conversations: int) -> str:
    """The creator of conversation ``c`` (a member that may send to it)."""
    return f"user-{(c * 7) % max(10, conversations // 10):07d}"


def fill(sequencer: Sequencer, conversations: int, messages: int, now_ms: int, sweep_every: int = 0) -> int:
    """Returns how many conversations the sweeps made cold."""
    writer, cold = SnapshotWriter(Settings()), 0
    for c in range(conversations):
        if sweep_every and c % sweep_every == 0 and c:
            sequencer.dirty.clear()  # as after a snapshot round
            cold += asyncio.run(writer.sweep(lambda: {0: sequencer}, force=True))
        sequencer.apply_all(conversation_events(c, conversations, messages, now_ms))
    return cold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=1_000_000)
    parser.add_argument("--messages", type=int, default=2)
    parser.add_argument("--sweep-every", type=int, default=50_000)
    parser.add_argument("--hot", action="store_true", help="no idle sweeps: every state stays objects")
    args = parser.parse_args()
    gc.collect()
    before = rss_bytes()
    started = time.monotonic()
    sequencer = Sequencer(thaw=thaw)
    cold = fill(sequencer, args.conversations, args.messages, int(time.time() * 1000),
                0 if args.hot else args.sweep_every)
    gc.collect()
    after = rss_bytes()
    print(json.dumps({"conversations": args.conversations, "messages_each": args.messages,
                      "cold": len(sequencer.cold), "hot": len(sequencer.conversations), "frozen_by_sweeps": cold,
                      "rss_before_mib": round(before / 2**20, 1), "rss_after_mib": round(after / 2**20, 1),
                      "bytes_per_conversation": round((after - before) / args.conversations),
                      "fill_s": round(time.monotonic() - started, 1)}))


if __name__ == "__main__":
    main()
