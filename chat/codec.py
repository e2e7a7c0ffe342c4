"""The one place that encodes and decodes events with fastavro.

Every record is an ``Envelope`` whose payload is the Avro binary of the event's
own schema at ``schema_version``. Schemas are read from ``schemas/`` at start-up.
Decoding resolves the writer's version to the newest one with Avro's rules; a
change Avro cannot resolve is bridged by a named function in ``UPCASTERS``.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import fastavro

from chat.errors import SchemaError
from chat.events import EVENT_TYPES, Event

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"

# (type, from_version) -> function turning a record of that version into one of from_version + 1.
# Example shape: ("MessageAccepted", 1): upcast_message_accepted_v1_v2
UPCASTERS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {}


@dataclass(frozen=True, slots=True)
class Decoded:
    event_id: str
    type: str
    schema_version: int
    occurred_at: int
    key: str
    event: Event


# Event ids: 64 random bits per process, then a counter (32 hex digits, like a uuid4's hex,
# at a tenth of the cost: an id is made for every record).
_ID_PREFIX = os.urandom(8).hex()
_id_counter = itertools.count()


def new_event_id() -> str:
    return f"{_ID_PREFIX}{next(_id_counter) & 0xFFFFFFFFFFFFFFFF:016x}"


# The envelope is written and read by hand (every record has one, and fastavro's generic
# writer and reader, with its datetime for ``occurred_at``, cost more than the payload's). The
# layout is checked against envelope.avsc when a Codec is made, and a unit test checks that
# the bytes are fastavro's.
ENVELOPE_LAYOUT = (("event_id", "string"), ("type", "string"), ("schema_version", "int"),
                   ("occurred_at", "long"), ("key", "string"), ("payload", "bytes"))


def zigzag(n: int) -> bytes:
    """Avro's encoding of a long (zigzag, then 7 bits a byte)."""
    n = (n << 1) ^ (n >> 63)  # zigzag
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _bytes(b: bytes) -> bytes:
    return zigzag(len(b)) + b


def write_envelope(event_id: str, type_name: str, schema_version: int, occurred_at: int, key: str,
                   payload: bytes) -> bytes:
    return b"".join((_bytes(event_id.encode()), _bytes(type_name.encode()), zigzag(schema_version),
                     zigzag(occurred_at), _bytes(key.encode()), _bytes(payload)))


def read_envelope(data: bytes) -> tuple[str, str, int, int, str, bytes]:
    """(event_id, type, schema_version, occurred_at, key, payload); SchemaError if not one."""
    pos = 0
    end = len(data)

    def long() -> int:
        nonlocal pos
        n = shift = 0
        while True:
            if pos >= end or shift > 63:
                raise SchemaError("not an envelope: truncated or bad number")
            b = data[pos]
            pos += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return (n >> 1) ^ -(n & 1)

    def raw() -> bytes:
        nonlocal pos
        size = long()
        if size < 0 or pos + size > end:
            raise SchemaError("not an envelope: bad length")
        pos += size
        return data[pos - size:pos]

    try:
        return (raw().decode(), raw().decode(), long(), long(), raw().decode(), bytes(raw()))
    except UnicodeDecodeError as exc:
        raise SchemaError(f"not an envelope: {exc}") from exc


def _layout(schema: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple((f["name"], f["type"] if isinstance(f["type"], str) else f["type"]["type"])
                 for f in schema["fields"])


class Codec:
    def __init__(self, schema_dir: Path = SCHEMA_DIR) -> None:
        self.schema_dir = schema_dir
        self._arounds: dict[tuple[str, str], Around] = {}
        self._types: dict[str, Any] = {}
        for path in sorted((schema_dir / "types").glob("*.avsc")):
            fastavro.parse_schema(json.loads(path.read_text()), named_schemas=self._types)
        self.envelope = fastavro.parse_schema(json.loads((schema_dir / "envelope.avsc").read_text()))
        if _layout(self.envelope) != ENVELOPE_LAYOUT:
            raise SchemaError("envelope.avsc changed: change write_envelope/read_envelope with it")
        self.schemas: dict[tuple[str, int], Any] = {}
        for path in sorted(schema_dir.glob("*.v*.avsc")):
            name, _, version = path.name.removesuffix(".avsc").rpartition(".v")
            named = dict(self._types)  # each version parses in its own namespace
            self.schemas[(name, int(version))] = fastavro.parse_schema(
                json.loads(path.read_text()), named_schemas=named
            )
        for event_type in EVENT_TYPES.values():
            if (event_type.TYPE, event_type.VERSION) not in self.schemas:
                raise SchemaError(f"no schema file for {event_type.TYPE} v{event_type.VERSION}")

    def latest(self, type_name: str) -> tuple[int, Any]:
        return self.schemas[(type_name, EVENT_TYPES[type_name].VERSION)], EVENT_TYPES[type_name].VERSION

    def encode(self, event: Event, *, key: str = "", event_id: str | None = None,
               occurred_at: int | None = None) -> bytes:
        schema = self.schemas[(event.TYPE, event.VERSION)]
        payload = io.BytesIO()
        try:
            fastavro.schemaless_writer(payload, schema, event.to_record())
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise SchemaError(f"{event.TYPE} does not match its schema: {exc}") from exc
        return write_envelope(event_id or new_event_id(), event.TYPE, event.VERSION,
                              occurred_at if occurred_at is not None else int(time.time() * 1000), key,
                              payload.getvalue())

    def decode(self, data: bytes) -> Decoded:
        event_id, type_name, version, occurred_at, key, payload = read_envelope(data)
        if type_name not in EVENT_TYPES or (type_name, version) not in self.schemas:
            raise SchemaError(f"unknown event {type_name} v{version}")
        record = self._read_payload(type_name, version, payload)
        return Decoded(event_id=event_id, type=type_name, schema_version=version, occurred_at=occurred_at,
                       key=key, event=EVENT_TYPES[type_name].from_record(record))

    def _read_payload(self, type_name: str, version: int, payload: bytes) -> dict[str, Any]:
        latest = EVENT_TYPES[type_name].VERSION
        # Walk the upcaster chain where one exists; Avro resolution covers the rest.
        while (type_name, version) in UPCASTERS and version < latest:
            record = fastavro.schemaless_reader(io.BytesIO(payload), self.schemas[(type_name, version)], None)
            record = UPCASTERS[(type_name, version)](record)
            version += 1
            if version == latest:
                return record
            payload = self._write(type_name, version, record)
        writer = self.schemas[(type_name, version)]
        reader = self.schemas[(type_name, latest)]
        try:
            return fastavro.schemaless_reader(io.BytesIO(payload), writer, reader if version != latest else None)
        except Exception as exc:
            raise SchemaError(f"cannot read {type_name} v{version}: {exc}") from exc

    def around(self, type_name: str, field: str) -> "Around":
        """The latest schema of ``type_name`` split at one of its array fields: a record of the
        fields before it and a record of the fields after it. Avro writes a
        record as its fields one after another, so the three encodings side by side, the array's
        as ``count, items, 0``, are the whole record's bytes (``Around.payload``). Made once."""
        made = self._arounds.get((type_name, field))
        if made is None:
            made = self._arounds[(type_name, field)] = self._around(type_name, field)
        return made

    def _around(self, type_name: str, field: str) -> "Around":
        version = EVENT_TYPES[type_name].VERSION
        raw = json.loads((self.schema_dir / f"{type_name}.v{version}.avsc").read_text())
        i = [f["name"] for f in raw["fields"]].index(field)
        array = raw["fields"][i]["type"]
        if not isinstance(array, dict) or array.get("type") != "array":
            raise SchemaError(f"{type_name}.{field} is not an array")

        def part(name: str, fields: list[Any]) -> Any:
            record = {"type": "record", "name": f"{type_name}{name}", "namespace": raw.get("namespace", ""),
                      "fields": fields}
            return fastavro.parse_schema(record, named_schemas=dict(self._types))

        return Around(type_name, version, part("Before", raw["fields"][:i]), part("After", raw["fields"][i + 1:]))

    def _write(self, type_name: str, version: int, record: dict[str, Any]) -> bytes:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, self.schemas[(type_name, version)], record)
        return buf.getvalue()


def schemaless(schema: Any, record: Any) -> bytes:
    buf = io.BytesIO()
    try:
        fastavro.schemaless_writer(buf, schema, record)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise SchemaError(f"does not match its schema: {exc}") from exc
    return buf.getvalue()


@dataclass(frozen=True)
class Around:
    """A record's schema split at one array field (``Codec.around``)."""
    type_name: str
    version: int
    before: Any
    after: Any

    def payload(self, record: dict[str, Any], items: list[bytes]) -> bytes:
        """The record's Avro: ``record`` holds every field but the array, ``items`` are the
        array's items already encoded."""
        array = b"".join((zigzag(len(items)), *items, b"\x00")) if items else b"\x00"
        return b"".join((schemaless(self.before, record), array, schemaless(self.after, record)))

    def envelope(self, payload: bytes, key: str) -> bytes:
        return write_envelope(new_event_id(), self.type_name, self.version, int(time.time() * 1000), key, payload)


_default: Codec | None = None


def default_codec() -> Codec:
    """The process-wide codec, schemas read once."""
    global _default
    if _default is None:
        _default = Codec()
    return _default


# Avro object container files (``chat replay --format avro``): every record is one decoded event
# with where it was read, the event itself a union of every event type's newest schema.

def container_schema(schema_dir: Path = SCHEMA_DIR) -> dict[str, Any]:
    types: dict[str, Any] = {}
    for path in sorted((schema_dir / "types").glob("*.avsc")):
        raw = json.loads(path.read_text())
        types[f"{raw.get('namespace', '')}.{raw['name']}".lstrip(".")] = raw
    branches: list[Any] = []
    defined: set[str] = set()
    for event_type in EVENT_TYPES.values():
        path = schema_dir / f"{event_type.TYPE}.v{event_type.VERSION}.avsc"
        branches.append(_inline_first_use(json.loads(path.read_text()), types, defined))
    return {
        "type": "record", "name": "ReplayedEvent", "namespace": "chat.replay",
        "fields": [
            {"name": "topic", "type": "string"}, {"name": "partition", "type": "int"},
            {"name": "offset", "type": "long"}, {"name": "timestamp", "type": "long"},
            {"name": "event_id", "type": "string"}, {"name": "type", "type": "string"},
            {"name": "schema_version", "type": "int"}, {"name": "occurred_at", "type": "long"},
            {"name": "key", "type": "string"}, {"name": "event", "type": branches},
        ],
    }


def _inline_first_use(node: Any, types: dict[str, Any], defined: set[str], namespace: str = "") -> Any:
    """Named types are defined where first used and referenced by name after that: those of
    ``types/`` referenced by name, and records a schema defines inline that another event's
    schema defined already (``DeliveryBatch`` holds ``Delivery`` records)."""
    if isinstance(node, str) and node in types:
        # (the definition's own dict marks the name defined)
        return node if node in defined else _inline_first_use(types[node], types, defined, namespace)
    if isinstance(node, list):
        return [_inline_first_use(n, types, defined, namespace) for n in node]
    if isinstance(node, dict):
        if node.get("type") in ("record", "enum", "fixed") and "name" in node:
            namespace = node.get("namespace", namespace)
            full = node["name"] if "." in node["name"] else f"{namespace}.{node['name']}".lstrip(".")
            if full in defined:
                return full
            defined.add(full)
        return {k: _inline_first_use(v, types, defined, namespace) if k in ("type", "items", "values", "fields") else v
                for k, v in node.items()}
    return node


class ContainerWriter:
    """Writes replayed events to an Avro object container file (deflate blocks)."""

    def __init__(self, fileobj: Any) -> None:
        from fastavro.write import Writer

        self._writer = Writer(fileobj, fastavro.parse_schema(container_schema()), codec="deflate")

    def add(self, where: dict[str, Any], decoded: Decoded) -> None:
        """``where``: topic, partition, offset, timestamp of the record."""
        event = decoded.event
        self._writer.write({**where, "event_id": decoded.event_id, "type": decoded.type,
                            "schema_version": decoded.schema_version, "occurred_at": decoded.occurred_at,
                            "key": decoded.key, "event": (f"chat.events.{event.TYPE}", event.to_record())})

    def close(self) -> None:
        self._writer.flush()
