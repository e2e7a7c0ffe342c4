"""What a snapshot round pays per conversation: encoding one ``ConversationSnapshot``.

    python -m bench.snapshot_encoding [--messages 300,1000,10000,100000 --repeat 5]

A conversation's snapshot holds the facts of every message within retention (90 days), and a
round re-encodes every conversation that changed since the last one, every
``CHAT_SNAPSHOT_INTERVAL_S``. For states of 10 members and N messages this prints the time of
``freeze`` the first time (no facts encoded yet), again after one more message (the round
after), and of the codec's whole-record encoding (``codec.encode(snapshot_of(...))``, what
``freeze`` did before each message's facts kept their encoding), each the best of ``--repeat``,
and checks the bytes are the same. In-process, no services. ``--results`` appends the table
to that markdown file (``make bench`` gives bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

from chat.codec import default_codec, read_envelope
from streams.model import ConversationState, MessageFacts
from streams.snapshot_state import freeze, snapshot_of


def state_with(messages: int) -> ConversationState:
    members = [f"user-{i:04d}-{'x' * 24}" for i in range(10)]
    state = ConversationState(conversation_id="c-" + "0" * 30, kind="group", name="team", description="",
                              members={m: "member" for m in members}, created_by=members[0], created_at=0)
    for seq in range(1, messages + 1):
        state.messages[seq] = MessageFacts(members[seq % 10], 1_796_000_000_000 + seq,
                                           hashlib.blake2b(str(seq).encode(), digest_size=16).digest(), None)
    state.last_seq = messages
    return state


def best(repeat: int, run) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.snapshot_encoding", description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", default="300,1000,10000,100000")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--results", type=Path, help="append a section to this markdown file")
    args = p.parse_args(argv)
    codec = default_codec()
    lines = ["| messages in the state | snapshot KiB | freeze, first (ms) | freeze, the round after (ms) "
             "| codec's whole record (ms) | same bytes |", "|---|---|---|---|---|---|"]
    for n in (int(x) for x in args.messages.split(",")):
        first = best(args.repeat, lambda: freeze(state_with(n), 1)) - best(args.repeat, lambda: state_with(n))
        state = state_with(n)
        freeze(state, 1)
        state.messages[n + 1] = MessageFacts("user-0001", 1_796_000_000_000 + n + 1, b"\0" * 16, None)
        again = best(args.repeat, lambda: freeze(state, 2))
        whole = best(args.repeat, lambda: codec.encode(snapshot_of(state, 2), key=state.conversation_id))
        blob = freeze(state, 2)
        same = read_envelope(blob)[5] == read_envelope(codec.encode(snapshot_of(state, 2)))[5]
        lines.append(f"| {n:,} | {len(blob) / 1024:,.0f} | {1000 * first:.2f} | {1000 * again:.2f} "
                     f"| {1000 * whole:.2f} | {same} |")
        print(lines[-1] if len(lines) > 3 else "\n".join(lines), flush=True)
    if args.results:
        from bench.run_local import append_section
        append_section("Encoding one conversation's snapshot",
                       f"python -m bench.snapshot_encoding {' '.join(argv or sys.argv[1:])}", lines, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
