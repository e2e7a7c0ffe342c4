"""``chat replay``: decode the Avro events of a topic range into JSON lines or an Avro container file.

Sealed bodies (chat/sealing.py) are opened with the message keys of the configured store,
unless ``--sealed``: a deleted or expired message's body cannot be opened and comes out as
"" (JSON lines mark it ``"body_erased": true``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import sys
from contextlib import ExitStack
from datetime import datetime
from typing import Any, BinaryIO

import orjson

from chat.codec import ContainerWriter, Decoded, default_codec
from chat.events import MessageAccepted, MessageEdited
from chat.errors import BadRequest, SchemaError
from chat.cli.progress import Progress
from chat.logread import BEGINNING, TopicReader
from chat.secure import kafka_security
from chat.settings import Settings


def add_parser(commands: Any) -> None:
    p = commands.add_parser("replay", help="decode a topic range to JSON lines or an Avro file",
                            description="Decode the Avro events of a topic range. Without --to-offset, the"
                            " range ends at each partition's end as of when the replay starts.")
    p.add_argument("--topic", required=True, help="full topic name, e.g. chat.events")
    p.add_argument("--partition", type=int, action="append", help="only this partition (repeatable)")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--from-offset", type=int, metavar="N", help="first offset, in every partition read")
    start.add_argument("--from-time", metavar="ISO", help="first record at or after this time (ISO 8601)")
    end = p.add_mutually_exclusive_group()
    end.add_argument("--to-offset", type=int, metavar="N", help="stop before offset N in every partition")
    end.add_argument("--to-time", metavar="ISO", help="stop at the first record after this time")
    p.add_argument("--conversation", metavar="ID", help="only records keyed by this conversation id")
    p.add_argument("--format", choices=("jsonl", "avro"), default="jsonl")
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of standard output")
    p.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    p.add_argument("--sealed", action="store_true",
                   help="leave message bodies sealed (do not read the message keys)")
    p.set_defaults(run=run)


def parse_time(text: str | None) -> int | None:
    """ISO 8601 (naive means UTC) -> ms since the epoch."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadRequest(f"not an ISO 8601 time: {text!r}") from exc
    if moment.tzinfo is None:
        from datetime import timezone
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return base64.b64encode(value).decode()
    raise TypeError(type(value).__name__)


def json_line(where: dict[str, Any], decoded: Decoded, *, erased: bool = False) -> bytes:
    line = {**where, "event_id": decoded.event_id, "type": decoded.type,
            "schema_version": decoded.schema_version, "occurred_at": decoded.occurred_at,
            "key": decoded.key, "event": decoded.event.to_record()}
    if erased:
        line["body_erased"] = True
    return orjson.dumps(line, default=_json_default) + b"\n"


class Opener:
    """Opens the sealed bodies of decoded events with the message keys (its own event loop:
    the replay itself is synchronous)."""

    def __init__(self, settings: Settings) -> None:
        from projections.message_keys import make_message_key_store

        self.loop = asyncio.new_event_loop()
        self.store = make_message_key_store(settings)
        self.loop.run_until_complete(self.store.open())

    def open(self, decoded: list[Decoded]) -> list[tuple[Decoded, bool]]:
        """Each decoded event with its body opened, and whether its body was erased."""
        from dataclasses import replace

        from projections.message_keys import open_batch

        opened = self.loop.run_until_complete(open_batch(self.store, [d.event for d in decoded]))
        return [(replace(d, event=e), _sealed(d.event) and not e.body) for d, e in zip(decoded, opened)]

    def close(self) -> None:
        self.loop.run_until_complete(self.store.close())
        self.loop.close()


def _sealed(event: Any) -> bool:
    return isinstance(event, (MessageAccepted, MessageEdited)) and event.sealed is not None


def run(settings: Settings, args: argparse.Namespace) -> int:
    from_ms, to_ms = parse_time(args.from_time), parse_time(args.to_time)
    with ExitStack() as stack:
        reader = stack.enter_context(TopicReader(settings.kafka_bootstrap, args.topic, config=kafka_security(settings)))
        partitions = args.partition or reader.partitions
        unknown = set(partitions) - set(reader.partitions)
        if unknown:
            raise BadRequest(f"{args.topic} has no partition {sorted(unknown)} (it has {len(reader.partitions)})")
        start = _start(reader, partitions, args.from_offset, from_ms)
        stop = {p: args.to_offset - 1 for p in partitions} if args.to_offset is not None else None
        out: BinaryIO = stack.enter_context(open(args.output, "wb")) if args.output else sys.stdout.buffer
        progress = Progress(f"replay {args.topic}", _estimate(reader, start, stop),
                            enabled=not args.no_progress)
        batches = reader.read(start, stop)
        opener = None if args.sealed or args.topic != settings.events_topic else Opener(settings)
        if opener is not None:
            stack.callback(opener.close)
        written, skipped = _copy(batches, out, args, (from_ms, to_ms), progress, opener)
        summary = progress.done()
    print(f"replayed {written:,} of {summary} from {args.topic}"
          + (f"; {skipped} undecodable records skipped" if skipped else ""), file=sys.stderr)
    return 0


def _start(reader: TopicReader, partitions: list[int], from_offset: int | None,
           from_ms: int | None) -> dict[int, int]:
    if from_ms is not None:
        found = reader.offsets_at(from_ms)
        high = {p: h for p, (_, h) in reader.watermarks().items()}
        return {p: found[p] if found[p] >= 0 else high[p] for p in partitions}
    return {p: BEGINNING if from_offset is None else from_offset for p in partitions}


def _estimate(reader: TopicReader, start: dict[int, int], stop: dict[int, int] | None) -> int:
    """Records in the range by the watermarks, for the progress bar."""
    total = 0
    for p, (low, high) in reader.watermarks().items():
        if p in start:
            end = min(high, stop[p] + 1) if stop else high
            total += max(0, end - max(low, start[p]))
    return total


def _copy(batches: Any, out: BinaryIO, args: argparse.Namespace, window: tuple[int | None, int | None],
          progress: Progress, opener: Opener | None = None) -> tuple[int, int]:
    """Write the batches' records that pass the filters; returns (written, undecodable)."""
    from_ms, to_ms = window
    codec, written, skipped, finished = default_codec(), 0, 0, set()
    container = ContainerWriter(out) if args.format == "avro" else None
    wanted_key = args.conversation.encode() if args.conversation else None
    for batch in batches:
        progress.add(len(batch))
        found: list[tuple[dict[str, Any], Decoded]] = []
        for msg in batch:
            timestamp = msg.timestamp()[1]
            if msg.partition() in finished:
                continue
            if to_ms is not None and timestamp > to_ms:
                finished.add(msg.partition())  # its first record past --to-time ends a partition
                continue
            # a record before --from-time can come with the first batch: filtered here too
            if (from_ms is not None and timestamp < from_ms) or (wanted_key and msg.key() != wanted_key):
                continue
            try:
                decoded = codec.decode(msg.value())
            except SchemaError:
                skipped += 1
                continue
            found.append(({"topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset(),
                           "timestamp": timestamp}, decoded))
        opened = opener.open([d for _, d in found]) if opener and found else [(d, False) for _, d in found]
        for (where, _), (decoded, erased) in zip(found, opened):
            if container is not None:
                container.add(where, decoded)
            else:
                out.write(json_line(where, decoded, erased=erased))
            written += 1
    if container is not None:
        container.close()
    out.flush()
    return written, skipped
