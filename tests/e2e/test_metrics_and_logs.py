"""``GET /metrics`` of the gateway and of the stream worker, and the JSON logs of both."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from infra.services import free_port
from tests.client import eventually, sign_in_users
from tests.support import System

SECRET_BODY = "body-that-must-never-be-logged"


@pytest.fixture(scope="module")
def system(stack, tmp_path_factory):
    system = System(stack, tmp_path_factory.mktemp("e2e-metrics"))
    system.metrics_port = free_port()  # type: ignore[attr-defined]
    system.start_worker(CHAT_WORKER_METRICS_PORT=str(system.metrics_port))  # type: ignore[attr-defined]
    system.start_gateway()
    yield system
    system.stop()


async def scrape(session: Any, url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with session.get(url) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
        text = await r.text()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def total(samples: dict[Any, float], name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))


async def test_gateway_and_worker_metrics(system, session):
    alice, bob = await sign_in_users(session, system.url(), "alice", "bob")
    a1, b1 = await alice.device("a1"), await bob.device("b1")
    cid = (await alice.create_group("metrics", [bob.user_id]))["conversation_id"]
    for i in range(3):
        await a1.send_message(cid, f"m{i}", SECRET_BODY)
    await a1.wait_for("ack", lambda f: f["conversation_id"] == cid, count=3)
    await b1.wait_for("message", lambda f: f["message"]["conversation_id"] == cid, count=3)
    await a1.send({"type": "send"})  # no conversation: bad_request
    await a1.wait_for("error", lambda f: f["code"] == "bad_request")

    gateway = await scrape(session, f"{system.url()}/metrics")
    assert total(gateway, "chat_connections_open") == 2
    assert total(gateway, "chat_frames_in_total", type="send") >= 4
    assert total(gateway, "chat_frames_out_total", type="message") >= 6  # 3 messages x 2 devices
    assert total(gateway, "chat_frames_out_total", type="ack") >= 3
    assert total(gateway, "chat_send_to_ack_seconds_count") >= 3
    assert total(gateway, "chat_deliveries_total") >= 6
    assert total(gateway, "chat_errors_total", code="bad_request") >= 1
    assert total(gateway, "chat_event_loop_lag_seconds_count") >= 1  # the loop's beat (chat/loop_watch.py)

    worker_url = f"http://127.0.0.1:{system.metrics_port}/metrics"
    worker = await scrape(session, worker_url)
    assert total(worker, "chat_worker_events_total", agent="project") >= 4
    assert total(worker, "chat_worker_events_total", agent="sequence") >= 4
    for projection in ("timelines", "conversations", "receipts"):
        assert total(worker, "chat_projection_write_seconds_count", projection=projection) >= 1
    assert total(worker, "chat_event_loop_lag_seconds_count") >= 1

    async def lag_reported() -> bool:
        samples = await scrape(session, worker_url)
        return sum(1 for (n, ls) in samples if n == "chat_consumer_lag" and ("agent", "project") in ls) \
            == system.settings.partitions
    deadline = time.monotonic() + 30
    while not await lag_reported():  # the group commits every second; read at most every 5 s
        assert time.monotonic() < deadline, "no consumer lag for the project agent's partitions"
        await asyncio.sleep(1)
    await asyncio.gather(a1.close(), b1.close())


def json_lines(path: Any) -> list[dict[str, Any]]:
    """Every line a process wrote must be one JSON object (the supervisor's "=== start" aside)."""
    lines = path.read_text().splitlines()
    assert all(line.startswith("{") for line in lines if line and not line.startswith("=== ")), lines[:20]
    return [json.loads(line) for line in lines if line.startswith("{")]


async def test_logs_are_json_lines_with_context_and_no_bodies(system, session):
    await eventually(lambda: any(r["msg"] == "connected" for r in json_lines(system.gateways[0].log_path)),
                     10, "the gateway's connected log line")
    gateway = json_lines(system.gateways[0].log_path)
    connected = [r for r in gateway if r["msg"] == "connected"]
    assert connected and all(r["user_id"] and r["device_id"] and r["gateway_id"] for r in connected)
    assert all({"ts", "level", "logger", "msg", "process"} <= set(r) for r in gateway)
    worker = json_lines(system.workers[0].log_path)
    assert any("recovered partition" in r["msg"] for r in worker), system.workers[0].log_tail()
    assert all(r["process"] == "worker" and r["worker_id"] for r in worker)
    # A worker that started and served normally says nothing an operator must look into.
    assert [r["msg"] for r in worker if r["level"] in ("error", "critical")] == []
    for service in (*system.gateways, *system.workers):
        assert SECRET_BODY not in service.log_path.read_text()
