"""`/healthz` is 200 only while the system can serve: live workers cover every partition and
answer the gateway's probe through the pipeline; an agent that crashes takes its worker down."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import urllib.error
import urllib.request

import aiohttp

from streams.app import EXIT_AGENT_CRASHED
from tests.client import Client
from tests.support import System, wait_healthy


def health(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=3) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def metrics(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as r:
        return r.read().decode()


def eventually(url: str, status: int, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            code, body = health(url)
            if code == status:
                return body
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"/healthz never answered {status} in {timeout}s; last: {health(url)}")


def test_healthz_follows_the_workers(stack, tmp_path):
    system = System(stack, tmp_path, partitions=2)
    gateway = system.start_gateway(wait=False)
    url = system.url(gateway)
    try:
        body = eventually(url, 503)
        assert body["checks"] == {"broker": True, "redis": True, "store": True, "consumer": True, "workers": False,
                                  "pipeline": False}
        worker = system.start_worker()
        wait_healthy(url, gateway)
        assert health(url)[1]["checks"]["workers"] is True
        assert worker.stop() == 0  # a clean stop leaves the registry at once
        body = eventually(url, 503, timeout=10)
        assert body["checks"]["workers"] is False
    finally:
        system.stop()


def test_a_stopped_worker_fails_the_pipeline_check_within_seconds(stack, tmp_path):
    """SIGSTOP leaves the worker registered (its registry entry lives for a minute), but no probe
    is answered: /healthz says so within probe_stale_s, and recovers once it runs again."""
    system = System(stack, tmp_path, partitions=2, CHAT_PROBE_STALE_S="3")
    worker = system.start_worker()
    gateway = system.start_gateway()
    url = system.url(gateway)
    try:
        os.kill(worker.pid, signal.SIGSTOP)
        stopped = time.monotonic()
        body = eventually(url, 503, timeout=15)
        assert time.monotonic() - stopped < 8
        assert body["checks"]["pipeline"] is False and body["checks"]["workers"] is True
        assert "chat_pipeline_up 0.0" in metrics(url)
        os.kill(worker.pid, signal.SIGCONT)
        eventually(url, 200, timeout=30)
        assert "chat_pipeline_up 1.0" in metrics(url)
    finally:
        os.kill(worker.pid, signal.SIGCONT)
        system.stop()


async def test_a_crashed_agent_stops_the_worker_and_a_restart_serves_again(stack, tmp_path):
    """An error out of the projector's loop (its first batch: the sequencer's fence) ends the
    worker with EXIT_AGENT_CRASHED, rather than a worker that looks alive with a dead agent;
    the worker started in its place reads that batch again and serves."""
    system = System(stack, tmp_path, partitions=1)
    crashing = system._service("worker", "tests.faults.crashing_worker", {"CHAT_WORKER_ID": "w-crash"})
    crashing.start()
    system.workers.append(crashing)
    gateway = system.start_gateway(wait=False)
    try:
        deadline = time.monotonic() + 60
        while crashing.running and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert crashing.returncode == EXIT_AGENT_CRASHED
        assert "crashed (RuntimeError: injected" in crashing.log_tail(400)
        system.start_worker()
        wait_healthy(system.url(gateway), gateway)
        async with aiohttp.ClientSession() as session:
            alice = await Client.sign_in(session, system.url(gateway), "alice")
            group = await alice.create_group("after the crash", [])
            status, page = await alice.call("GET", f"/v1/conversations/{group['conversation_id']}/messages")
            assert status == 200 and page["messages"] == []
    finally:
        system.stop()
