"""Running the real system for tests: stream workers and gateways as processes (and, for unit
tests, one real aiohttp handler: ``serve``).

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

from chat import keys
from chat.secure import kafka_security
from chat.settings import Settings
from infra.services import Service, free_port
from infra.topics import core_topic_configs, core_topics, ensure_topics

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
            # The local push stand-ins (tests/push_server.py) speak http on loopback: allowed
            # here on purpose, as an operator would for a webhook receiver on a private network.
            "CHAT_PUSH_ALLOW_HTTP": "true",
            "CHAT_PUSH_ALLOW_CIDRS": "127.0.0.0/8",
            **env,
        }
        self.settings = Settings.from_env(self.env)
        ensure_topics(stack.bootstrap, core_topics(self.settings), configs=core_topic_configs(self.settings),
                      client_config=kafka_security(self.settings))
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

    def start_gateway(self, *, wait: bool = True, port: int | None = None, **extra: str) -> Service:
        """A gateway on a free port, or on ``port`` beside the gateways already there (SO_REUSEPORT)."""
        shared = port is not None
        port = port or free_port()
        gateway = self._service("gateway", "gateway", {
            "CHAT_PORT": str(port), "CHAT_GATEWAY_ID": f"{self.name}-gw{port}-{len(self.gateways)}",
            **({"CHAT_REUSE_PORT": "true"} if shared else {}), **extra})
        gateway.port_number = port  # type: ignore[attr-defined]
        gateway.start()
        self.gateways.append(gateway)
        if wait:
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


# Kafka helpers for the integration tier: produce commands as the gateway does, and read a
# topic partition from its first record: a reader reads until the caller has seen what it
# expects, or a timeout.

import uuid  # noqa: E402  (imports of this appended block, kept with it)
from typing import Callable  # noqa: E402

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition  # noqa: E402

from chat.codec import Decoded, default_codec  # noqa: E402

QUIET_KAFKA = {"log_level": 0}


class CommandProducer:
    """Commands keyed by conversation id, partitioned as the gateway does (murmur2)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.codec = default_codec()
        self.producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "partitioner": "murmur2_random",
                                  "acks": "all", "enable.idempotence": True, "linger.ms": 1, **QUIET_KAFKA})
        self.partitions: dict[str, set[int]] = {}  # conversation id -> partitions its commands went to
        self.delivered = 0
        self.errors: list[str] = []

    def _done(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.errors.append(err.str())
            return
        self.delivered += 1
        self.partitions.setdefault(msg.key().decode(), set()).add(msg.partition())

    def send(self, command: Any) -> None:
        cid = command.conversation_id
        self.producer.produce(self.settings.commands_topic, self.codec.encode(command, key=cid),
                              key=cid.encode(), on_delivery=self._done)
        self.producer.poll(0)

    def flush(self, timeout: float = 15.0) -> None:
        left = self.producer.flush(timeout)
        if left or self.errors:
            raise AssertionError(f"{left} commands not delivered; errors: {self.errors[:5]}")

    def partition_of(self, conversation_id: str) -> int:
        self.flush()
        (partition,) = self.partitions[conversation_id]  # one key, one partition
        return partition


class PartitionReader:
    """The decoded records (``chat.codec.Decoded``) of one topic partition, from offset 0."""

    def __init__(self, bootstrap: str, topic: str, partition: int) -> None:
        self.codec = default_codec()
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4().hex}",
                                  "enable.auto.commit": False, **QUIET_KAFKA})
        self.consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
        self.where = f"{topic}[{partition}]"
        self.records: list[Decoded] = []

    def poll(self, timeout: float = 0.2) -> list[Decoded]:
        """Read what has arrived; returns every record read so far, in log order."""
        for msg in self.consumer.consume(num_messages=2_000, timeout=timeout):
            if msg.error() is None:
                self.records.append(self.codec.decode(msg.value()))
        return self.records

    def read_until(self, done: Callable[[list[Decoded]], bool], timeout: float = 30.0,
                   what: str = "") -> list[Decoded]:
        """Read until ``done(records)`` is true; ``TimeoutError`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not done(self.poll()):
            if time.monotonic() > deadline:
                types: dict[str, int] = {}
                for record in self.records:
                    types[record.type] = types.get(record.type, 0) + 1
                raise TimeoutError(f"{self.where}: not seen {what or done} after {timeout:.0f}s; read {types}")
        return self.records

    def close(self) -> None:
        self.consumer.close()

    def __enter__(self) -> "PartitionReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# Appended for the e2e tier's multi-worker tests: wait until the stream workers have settled.

def wait_workers(system: System, count: int, timeout: float = 60.0) -> dict[str, tuple[set[int], set[int]]]:
    """Block until ``count`` live workers each serve at least one recovered commands partition
    and together serve every partition of both topics (``workers:{app id}`` in Redis, as the
    workers announce it); returns worker id -> (commands partitions, events partitions).

    ``/healthz`` turns 200 as soon as the first worker covers everything; this waits for the
    rebalances that follow when more workers join.
    """
    import redis as sync_redis

    client = sync_redis.Redis.from_url(system.env["CHAT_REDIS_URL"])
    wanted = set(range(system.settings.partitions))
    deadline = time.monotonic() + timeout
    served: dict[str, tuple[set[int], set[int]]] = {}
    try:
        while True:
            now_ms = int(time.time() * 1000)
            served = {}
            for worker, value in client.hgetall(keys.workers(system.settings.app_id)).items():
                parts, _, expires = value.decode().rpartition("|")
                if int(expires) <= now_ms:
                    continue
                commands, _, events = parts.partition(";")
                served[worker.decode()] = ({int(p) for p in commands.split(",") if p},
                                           {int(p) for p in events.split(",") if p})
            covered = (set().union(*(c for c, _ in served.values())) if served else set(),
                       set().union(*(e for _, e in served.values())) if served else set())
            if (len(served) >= count and all(c for c, _ in served.values())
                    and covered == (wanted, wanted)):
                return served
            if time.monotonic() > deadline:
                raise TimeoutError(f"{count} workers not serving every partition after {timeout}s: {served}")
            time.sleep(0.2)
    finally:
        client.close()


# One real aiohttp handler on a loopback port, for unit tests of code that needs a real server
# or client socket (gateway/upgraded.py, the write path, bench/wsclient.py).

import contextlib  # noqa: E402
from collections.abc import AsyncIterator, Awaitable  # noqa: E402

from aiohttp import web  # noqa: E402

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@contextlib.asynccontextmanager
async def serve(handler: Handler, path: str = "/ws", *, scheme: str = "http") -> AsyncIterator[str]:
    """Serve ``handler`` for GET ``path`` on 127.0.0.1 and a port the OS picks; yields the URL
    (``scheme://127.0.0.1:port/path``). The server is cleaned up on leaving, also on an error."""
    app = web.Application()
    app.router.add_get(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        yield f"{scheme}://127.0.0.1:{port}{path}"
    finally:
        await runner.cleanup()
