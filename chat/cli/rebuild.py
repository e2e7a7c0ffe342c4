"""``chat rebuild``: rebuild projections from the event log while the system keeps serving."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from chat.cli.progress import Progress
from chat.settings import Settings
from projections.rebuild import REGISTRY, Outcome, rebuild, resolve


def add_parser(commands: Any) -> None:
    p = commands.add_parser(
        "rebuild", help="rebuild projections from the event log",
        description="Replay the log from its start into a fresh copy of each projection (a shadow SQLite"
        " table, a scratch Redis database) while the live ones keep serving, switch to the copy, then"
        " catch up with what arrived meanwhile. The end of the log is a marker record written to each"
        " partition, so writes made during the rebuild are caught up too. See README, Operations.")
    p.add_argument("projection", choices=[*REGISTRY, "all"], help="what to rebuild")
    p.add_argument("--dry-run", action="store_true",
                   help="write nothing (not even markers): read the log and count what would be applied")
    p.add_argument("--scratch-db", type=int, default=15, metavar="N",
                   help="an empty Redis database for the Redis projections' copies (default 15)")
    p.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    p.set_defaults(run=run)


def run(settings: Settings, args: argparse.Namespace) -> int:
    specs = resolve([args.projection])
    meter = Progress("dry run" if args.dry_run else "rebuild", enabled=not args.no_progress)
    outcomes = asyncio.run(rebuild(settings, specs, scratch_db=args.scratch_db, dry_run=args.dry_run,
                                   meter=meter))
    summary = meter.done()
    for outcome in outcomes:
        print(describe(outcome, args.dry_run), file=sys.stderr)
    print(f"read {summary}", file=sys.stderr)
    return 0


def describe(o: Outcome, dry_run: bool) -> str:
    if dry_run:
        types = ", ".join(f"{k} {v:,}" for k, v in sorted(o.by_type.items()))
        return f"{o.projection}: would apply {o.events:,} events ({types or 'none'}); nothing written"
    return (f"{o.projection}: rebuilt from {o.events:,} events in {o.seconds:.2f} s ({o.rate:,.0f} events/s);"
            f" {o.size_before:,} -> {o.size_after:,} rows/keys; {o.caught_up:,} events caught up after the switch")
