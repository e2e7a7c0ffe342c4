"""`/healthz` is 200 only while the system can serve: live workers cover every partition."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from tests.support import System, wait_healthy


def health(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=3) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


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
        assert body["checks"] == {"broker": True, "redis": True, "store": True, "consumer": True, "workers": False}
        worker = system.start_worker()
        wait_healthy(url, gateway)
        assert health(url)[1]["checks"]["workers"] is True
        assert worker.stop() == 0  # a clean stop leaves the registry at once
        body = eventually(url, 503, timeout=10)
        assert body["checks"]["workers"] is False
    finally:
        system.stop()
