"""Running the real system for tests: stream workers and gateways as processes.

Every ``System`` gets its own topic prefix, Faust app id, Redis database and data dir,
so test modules share one broker and one Redis without seeing each other's state.
"""

from __future__ import annotations

import itertools
import os
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from chat.settings import Settings
from infra.services import Service, free_port
from infra.topics import core_topics, ensure_topics

ROOT = Path(__file__).resolve().parent.parent
_numbers = itertools.count(1)


class System:
    def __init__(self, stack: Any, base_dir: Path, *, partitions: int = 4, **env: str) -> None:
        n = next(_numbers)
        self.name = f"t{n}"
        self.stack = stack
        self.base_dir = base_dir
        self.env = {
            "CHAT_KAFKA_BOOTSTRAP": stack.bootstrap,
            "CHAT_REDIS_URL": f"{stack.redis_url.rsplit('/', 1)[0]}/{n % 16}",
            "CHAT_TOPIC_PREFIX": f"{self.name}.",
            "CHAT_APP_ID": f"chat-{self.name}",
            "CHAT_DATA_DIR": str(base_dir / "data"),
            "CHAT_PARTITIONS": str(partitions),
            "CHAT_LOG_LEVEL": "INFO",
            **env,
        }
        self.settings = Settings.from_env(self.env)
        ensure_topics(stack.bootstrap, core_topics(self.settings))
        self.workers: list[Service] = []
        self.gateways: list[Service] = []
        self._procs = itertools.count(1)

    def _service(self, kind: str, module: str, extra: dict[str, str]) -> Service:
        name = f"{self.name}-{kind}{next(self._procs)}"
        env = {**os.environ, **self.env, **extra}
        return Service(name, [sys.executable, "-m", module], env=env, cwd=ROOT,
                       log_path=self.base_dir / "logs" / f"{name}.log")

    def start_worker(self, **extra: str) -> Service:
        worker = self._service("worker", "streams.worker", {"CHAT_WORKER_ID": f"w{len(self.workers)}", **extra})
        worker.start()
        self.workers.append(worker)
        return worker

    def start_gateway(self, **extra: str) -> Service:
        port = free_port()
        gateway = self._service("gateway", "gateway", {"CHAT_PORT": str(port),
                                                       "CHAT_GATEWAY_ID": f"{self.name}-gw{port}", **extra})
        gateway.port_number = port  # type: ignore[attr-defined]
        gateway.start()
        self.gateways.append(gateway)
        wait_healthy(f"http://127.0.0.1:{port}", gateway)
        return gateway

    def url(self, gateway: Service | None = None) -> str:
        gateway = gateway or self.gateways[0]
        return f"http://127.0.0.1:{gateway.port_number}"  # type: ignore[attr-defined]

    def stop(self) -> None:
        for service in self.gateways + self.workers:
            service.stop()


def wait_healthy(base_url: str, service: Service, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not service.running:
            raise RuntimeError(f"{service.name} exited:\n{service.log_tail(40)}")
        try:
            with urllib.request.urlopen(f"{base_url}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{service.name} not healthy after {timeout}s:\n{service.log_tail(40)}")
