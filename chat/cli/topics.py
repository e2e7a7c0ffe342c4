"""``chat topics``: the topics, their partitions and offsets, and each agent's consumer lag.

Lag is the high watermark minus the consumer group's committed offset: what the agent has
not committed yet.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from chat.offsets import rows
from chat.settings import Settings


def add_parser(commands: Any) -> None:
    p = commands.add_parser("topics", help="topics, partitions, offsets and consumer lag per agent",
                            description="List the topics with the configured prefix (CHAT_TOPIC_PREFIX),"
                            " their partitions' low and high offsets, and for the stream agents the"
                            " committed offset and lag of their consumer group (CHAT_APP_ID).")
    p.add_argument("--all", action="store_true", help="every topic on the broker, not only the prefix's")
    p.set_defaults(run=run)


def run(settings: Settings, args: argparse.Namespace) -> int:
    table = rows(settings, args.all)
    header = ("TOPIC", "PART", "LOW", "HIGH", "AGENT", "GROUP", "COMMITTED", "LAG")
    lines = [header]
    for r in table:
        lines.append((r["topic"], str(r["partition"]), str(r["low"]), str(r["high"]), r["agent"] or "-",
                      settings.app_id if r["agent"] else "-",
                      "-" if r["committed"] is None else str(r["committed"]),
                      "-" if r["lag"] is None else str(r["lag"])))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip())
    print(f"{len({r['topic'] for r in table})} topics on {settings.kafka_bootstrap}.", file=sys.stderr)
    return 0


