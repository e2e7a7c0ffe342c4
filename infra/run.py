"""``make run``: start the whole system on one machine and supervise it until Ctrl-C.

Order: Redis and Apache Kafka (one KRaft node) side by side, their data under ``.data/`` so it
survives restarts, the core topics, then the stream worker and the gateway as child processes.
Ready when the gateway's ``/healthz`` answers 200. Ctrl-C (or SIGTERM) stops the gateway, the
worker, Kafka and Redis, in that order. A worker or gateway that dies is restarted a few times.

Services run on fixed ports so a second run finds its data, and so the ``chat`` command line
finds them with no settings (their defaults are these ports): Kafka 19092 (its controller
19093), Redis 16379. ``CHAT_KAFKA_BOOTSTRAP`` / ``CHAT_REDIS_URL`` mean "use that external
service instead". With ``CHAT_TIMELINE_BACKEND=cassandra`` a Cassandra node starts too, beside
the others (data under ``.data/cassandra``, CQL on 19042, storage 17000), unless
``CHAT_CASSANDRA_HOSTS`` names one. Logs of every child: ``.data/logs/``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Mapping, Sequence

from chat.errors import ChatError
from chat.settings import Settings
from infra.services import Service, ServiceError
from infra.stack import LocalStack
from infra.topics import core_topic_configs, core_topics

REPO = Path(__file__).resolve().parent.parent
MAX_RESTARTS = 3
STOP_TIMEOUT_S = 15.0


def log(message: str) -> None:
    print(f"[run] {message}", flush=True)


class Gateway(Service):
    """The aiohttp gateway; ready when ``GET /healthz`` answers 200."""

    def health(self) -> tuple[int, dict]:
        """``/healthz``'s status and body; (0, {}) while nothing answers."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            try:
                return exc.code, json.loads(exc.read())
            except ValueError:
                return exc.code, {}
        except (urllib.error.URLError, OSError, ValueError):
            return 0, {}

    def ready(self) -> bool:
        return self.health()[0] == 200


# What each /healthz check means, for the line `make run` prints while it waits.
CHECKS = {
    "broker": "the gateway cannot reach Kafka (.data/logs/kafka.log)",
    "redis": "the gateway cannot reach Redis (.data/logs/redis.log)",
    "store": "the timeline store does not answer",
    "consumer": "the gateway's delivery consumer is not reading (gateway.log)",
    "workers": "no live stream worker serves every partition yet (worker.log)",
    "pipeline": "a probe through the commands topic and the sequencer got no answer (worker.log)",
}


def failing(body: dict) -> list[str]:
    return [name for name, ok in body.get("checks", {}).items() if not ok]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m infra.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--broker-port", type=int, default=19092)
    p.add_argument("--controller-port", type=int, default=19093)
    p.add_argument("--redis-port", type=int, default=16379)
    p.add_argument("--cassandra-port", type=int, default=19042, help="CQL (with CHAT_TIMELINE_BACKEND=cassandra)")
    p.add_argument("--cassandra-storage-port", type=int, default=17000)
    p.add_argument("--health-timeout", type=float, default=120.0)
    p.add_argument("--worker-module", default="streams.worker")
    p.add_argument("--gateway-module", default="gateway")
    return p.parse_args(argv)


def build_stack(settings: Settings, environ: Mapping[str, str], data_dir: Path, args: argparse.Namespace) -> LocalStack:
    # The entry point is the one place that may ask whether a variable was set at all:
    # a set CHAT_KAFKA_BOOTSTRAP / CHAT_REDIS_URL means "external, don't start one".
    return LocalStack(
        data_dir,
        topics=core_topics(settings),
        topic_configs=core_topic_configs(settings),
        replication_factor=settings.replication_factor,
        kafka_port=args.broker_port,
        controller_port=args.controller_port,
        redis_port=args.redis_port,
        kafka_bootstrap=settings.kafka_bootstrap if "CHAT_KAFKA_BOOTSTRAP" in environ else None,
        redis_url=settings.redis_url if "CHAT_REDIS_URL" in environ else None,
        cassandra=settings.timeline_backend == "cassandra" and "CHAT_CASSANDRA_HOSTS" not in environ,
        cassandra_port=args.cassandra_port,
        cassandra_storage_port=args.cassandra_storage_port,
    )


def build_apps(settings: Settings, stack: LocalStack, data_dir: Path, args: argparse.Namespace) -> list[Service]:
    """The stream worker and the gateway, with the stack's addresses in their environment."""
    env = dict(os.environ)
    env.update(
        CHAT_KAFKA_BOOTSTRAP=stack.bootstrap,
        CHAT_REDIS_URL=stack.redis_url,
        CHAT_PORT=str(settings.port),
        CHAT_DATA_DIR=str(data_dir),
        PYTHONUNBUFFERED="1",
    )
    if stack.cassandra_hosts:
        env["CHAT_CASSANDRA_HOSTS"] = stack.cassandra_hosts
    logs = data_dir / "logs"
    # The worker's Prometheus endpoint: CHAT_WORKER_METRICS_PORT, or 9464 under `make run`.
    worker_env = {**env, "CHAT_WORKER_METRICS_PORT": str(settings.worker_metrics_port or 9464)}
    worker = Service("worker", [sys.executable, "-m", args.worker_module], env=worker_env, cwd=REPO,
                     log_path=logs / "worker.log")
    return [worker, *gateways(settings, env, logs, args.gateway_module)]


def gateways(settings: Settings, env: dict[str, str], logs: Path, module: str) -> list[Service]:
    """The gateway processes: one, or ``CHAT_GATEWAYS`` on the one port (SO_REUSEPORT), each
    with its own id (its delivery topic) and log."""
    if settings.gateways <= 1:
        gateway = Gateway("gateway", [sys.executable, "-m", module], env=env, cwd=REPO, log_path=logs / "gateway.log")
        gateway.port = settings.port
        return [gateway]
    out = []
    for i in range(1, settings.gateways + 1):
        gateway = Gateway(f"gateway{i}", [sys.executable, "-m", module], cwd=REPO, log_path=logs / f"gateway{i}.log",
                          env={**env, "CHAT_REUSE_PORT": "true",
                               "CHAT_GATEWAY_ID": f"{settings.gateway_id}-{i}"})
        gateway.port = settings.port
        out.append(gateway)
    return out


def wait_healthy(apps: list[Service], timeout: float, stopping: threading.Event) -> bool:
    """Until the gateway answers /healthz 200. Says which checks fail whenever that changes;
    raises with those checks and the log tails if a child dies or the time runs out."""
    gateway = apps[-1]
    assert isinstance(gateway, Gateway)
    # Gateways sharing the port (SO_REUSEPORT) each answer some of the checks: all of them are
    # taken to be ready after this many 200s in a row.
    needed, in_a_row = 3 * sum(isinstance(a, Gateway) for a in apps) - 2, 0
    deadline = time.monotonic() + timeout
    said: list[str] | None = None
    while not stopping.is_set():
        dead = [a for a in apps if not a.running]
        if dead:
            tails = "\n".join(a.log_tail() for a in apps)
            raise ServiceError(f"{', '.join(f'{a.name} exited with {a.returncode}' for a in dead)}\n{tails}")
        status, body = gateway.health()
        in_a_row = in_a_row + 1 if status == 200 else 0
        if in_a_row >= needed:
            return True
        if status == 200:
            stopping.wait(0.05)
            continue
        waiting = failing(body) if status else ["gateway"]
        if waiting != said:
            log("waiting for: " + "; ".join(CHECKS.get(n, f"{n} (the gateway is not listening yet)")
                                           for n in waiting))
            said = waiting
        if time.monotonic() > deadline:
            tails = "\n".join(a.log_tail() for a in apps)
            raise ServiceError(f"gateway /healthz not 200 after {timeout:.0f}s; failing: {', '.join(waiting)}\n{tails}")
        stopping.wait(0.2)
    return False


def supervise(stack: LocalStack, apps: list[Service], stopping: threading.Event) -> int:
    """Restart a dead worker or gateway up to MAX_RESTARTS times; 0 on a requested stop."""
    restarts = {a.name: 0 for a in apps}
    while not stopping.wait(0.5):
        for service in stack.dead():
            log(f"{service.name} exited with {service.returncode}; stopping everything\n{service.log_tail()}")
            return 1
        for app in apps:
            if app.running:
                continue
            if restarts[app.name] >= MAX_RESTARTS:
                log(f"{app.name} exited with {app.returncode} after {MAX_RESTARTS} restarts; giving up\n"
                    f"{app.log_tail()}")
                return 1
            restarts[app.name] += 1
            log(f"{app.name} exited with {app.returncode}; restarting ({restarts[app.name]}/{MAX_RESTARTS}),"
                f" log: {app.log_path}")
            try:
                app.start()
            except ServiceError as exc:
                log(str(exc))
    return 0


def shutdown(stack: LocalStack, apps: list[Service]) -> None:
    for app in reversed(apps):  # gateway, then worker
        if app.proc is not None:
            log(f"stopping {app.name}")
            app.stop(STOP_TIMEOUT_S)
    if stack.services:
        log("stopping " + ", ".join(s.name for s in reversed(stack.services)))
    stack.stop()


def main(argv: Sequence[str] | None = None) -> int:
    started = time.monotonic()
    args = parse_args(argv)
    environ = os.environ
    settings = Settings.from_env(environ)
    data_dir = Path(settings.data_dir).resolve() if "CHAT_DATA_DIR" in environ else REPO / ".data"
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda *_: stopping.set())

    stack = build_stack(settings, environ, data_dir, args)
    apps = build_apps(settings, stack, data_dir, args)
    code = 1
    try:
        owned = ", ".join(s.name for s in stack.services) or "no services (external broker and Redis)"
        log(f"starting {owned} (data: {data_dir})")
        stack.start()
        log(f"broker {stack.bootstrap}, redis {stack.redis_url}, topics {stack.topics}"
            + (f", cassandra {stack.cassandra_hosts}" if stack.cassandra_hosts else ""))
        for app in apps:
            app.start()
        if wait_healthy(apps, args.health_timeout, stopping):
            log(f"logs: {data_dir / 'logs'}")
            print(f"Chat is running at http://127.0.0.1:{settings.port}/  (Ctrl-C to stop)", flush=True)
            print(f"started in {time.monotonic() - started:.1f}s", flush=True)
            code = supervise(stack, apps, stopping)
        else:
            code = 0
    except ChatError as exc:  # ServiceError, or a topic that cannot be created or differs
        log(f"failed: {exc}")
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean stop short
        shutdown(stack, apps)
        log("stopped")
    return code


if __name__ == "__main__":
    sys.exit(main())
