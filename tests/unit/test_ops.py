"""Unit tests of the operations helpers: JSON logs, frame types, the replay container schema,
CLI arguments, and the Grafana dashboard's metric names."""

from __future__ import annotations

import io
import json
import logging
import re
from pathlib import Path

import fastavro
import pytest

from chat.cli import main, parser
from chat.cli.replay import parse_time
from chat.codec import ContainerWriter, default_codec
from chat.errors import BadRequest
from chat.events import MessageAccepted, Origin
from chat.logs import JsonFormatter
from gateway.metrics import Metrics, frame_type
from streams import metrics as worker_metrics

ROOT = Path(__file__).resolve().parents[2]
MESSAGE = MessageAccepted(conversation_id="g_1", seq=7, message_id="m", sender_id="u", client_msg_id="c",
                          body="secret", sent_at=5, origin=Origin("gw", "d"))


def test_json_log_line_has_context_and_only_known_fields():
    record = logging.LogRecord("chat.x", logging.INFO, __file__, 1, "sent %s", ("ok",), None)
    record.conversation_id, record.user_id, record.body = "g_1", "alice", "secret"
    line = JsonFormatter({"process": "gateway", "gateway_id": "gw1"}).format(record)
    assert "\n" not in line
    out = json.loads(line)
    assert out["msg"] == "sent ok" and out["level"] == "info" and out["logger"] == "chat.x"
    assert (out["conversation_id"], out["user_id"], out["gateway_id"]) == ("g_1", "alice", "gw1")
    assert "body" not in out and "secret" not in line


def test_query_tokens_are_redacted():
    record = logging.LogRecord("aiohttp.access", logging.INFO, __file__, 1,
                               '"GET /v1/ws?device_id=d&token=eyJh.eyJ.sig HTTP/1.1" 101', (), None)
    line = JsonFormatter().format(record)
    assert "eyJh" not in line and "token=<redacted>" in line


def test_frame_type_reads_the_first_type():
    assert frame_type(b'{"type":"message","message":{"type":"x"}}') == "message"
    assert frame_type(b'{"type": "ack"}') == "ack"
    assert frame_type(b"[]") == "unknown"


def test_avro_container_round_trips_decoded_events():
    codec = default_codec()
    decoded = codec.decode(codec.encode(MESSAGE, key="g_1"))
    out = io.BytesIO()
    writer = ContainerWriter(out)
    writer.add({"topic": "t", "partition": 1, "offset": 2, "timestamp": 3}, decoded)
    writer.close()
    out.seek(0)
    (record,) = list(fastavro.reader(out))
    assert record["type"] == "MessageAccepted" and record["key"] == "g_1" and record["offset"] == 2
    assert record["event"] == MESSAGE.to_record()


def test_parse_time():
    assert parse_time("1970-01-01T00:00:01Z") == 1000
    assert parse_time("1970-01-01T00:00:01") == 1000  # naive means UTC
    with pytest.raises(BadRequest):
        parse_time("yesterday")


def test_every_subcommand_has_help(capsys):
    for command in ("replay", "rebuild", "topics"):
        with pytest.raises(SystemExit) as done:
            main([command, "--help"])
        assert done.value.code == 0
        assert f"usage: chat {command}" in capsys.readouterr().out
    with pytest.raises(SystemExit) as done:
        parser().parse_args(["rebuild", "everything"])
    assert done.value.code == 2


def test_dashboard_uses_only_metrics_that_exist():
    dashboard = json.loads((ROOT / "infra" / "grafana" / "chat-dashboard.json").read_text())
    used = {name for panel in dashboard["panels"] for target in panel["targets"]
            for name in re.findall(r"\b(chat_[a-z_]+)", target["expr"])}
    known = set()
    for registry in (Metrics().registry, worker_metrics.registry):
        for family in registry.collect():  # labelled metrics have no samples yet: names by type
            suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}.get(family.type, [""])
            known |= {family.name + suffix for suffix in suffixes}
    known |= {"chat_consumer_lag", "chat_consumer_committed_offset"}  # collected at scrape time
    assert used and used <= known, used - known


def test_rebuild_registry_names_what_it_cannot_rebuild(monkeypatch):
    from chat.errors import NotFound
    from projections import rebuild

    assert [s.name for s in rebuild.resolve(["all"])] == ["timelines", "conversations", "receipts", "presence",
                                                          "social", "search", "profiles"]
    monkeypatch.setitem(rebuild.REGISTRY, "typing", None)
    with pytest.raises(NotFound, match="cannot be rebuilt yet"):
        rebuild.resolve(["typing"])
    with pytest.raises(NotFound, match="no projection 'nope'"):
        rebuild.resolve(["nope"])
    assert "typing" not in [s.name for s in rebuild.resolve(["all"])]
