"""``make cluster``: the whole system as a small cluster on this machine, supervised until Ctrl-C.

Three Kafka brokers in one KRaft quorum (topics with replication factor 3, min.insync.replicas
2, no unclean leader election), one Cassandra node keeping the timelines, a Redis Cluster of
three masters with a replica each, two stream workers and two gateways, and HAProxy in front
of the gateways (WebSockets too) so clients use one URL: http://127.0.0.1:8080/ (CHAT_PORT).
Ports (``ClusterPorts.fixed``): gateways 8081/8082, worker metrics 9464/9465, Kafka
19192-19194 (controllers 19195-19197), Redis 16380-16385, Cassandra CQL 19142. Data and logs
under ``.data/cluster`` (``CHAT_DATA_DIR`` moves it). Ctrl-C stops the proxy, the gateways,
the workers, then Kafka, Redis and Cassandra. A worker or gateway that dies is restarted a few
times; a dependency that dies stops everything (as ``make run``).

``--secured`` (``make cluster-secured``) runs the same deployment secured as managed services
are: Kafka SASL_SSL with SCRAM-SHA-512 for every client and between brokers (PLAIN over TLS
between controllers), the Redis Cluster with an ACL user and TLS (clients, bus, replication),
Cassandra with a password role over TLS; a throwaway CA signs the certificates. Data under
``.data/cluster-secured``; ``chat.env`` there holds the CHAT_* settings a client needs.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Mapping, Sequence

from chat.errors import ChatError
from chat.settings import Settings
from infra.cluster_stack import ClusterPorts, ClusterStack
from infra.run import Gateway, shutdown, supervise, wait_healthy
from infra.security import StackSecurity
from infra.services import Service

REPO = Path(__file__).resolve().parent.parent

HAPROXY_CFG = """\
global
    # maxconn: derived from the file-descriptor limit
defaults
    mode http
    timeout connect 1s
    timeout client 60s
    timeout server 60s
    timeout tunnel 1h
    retries 2
    option redispatch
frontend chat
    bind 127.0.0.1:{port}
    default_backend gateways
backend gateways
    balance leastconn
{servers}
"""


def log(message: str) -> None:
    print(f"[cluster] {message}", flush=True)


class Proxy(Gateway):
    """HAProxy in front of the gateways; ready when ``/healthz`` through it answers 200.
    A gateway that refuses connections is out of the rotation after one failed check (0.5 s)."""

    def __init__(self, port: int, gateways: Sequence[int], data_dir: Path, log_path: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        config = data_dir / "haproxy.cfg"
        servers = "\n".join(f"    server gw{i + 1} 127.0.0.1:{p} check inter 500ms fall 1 rise 1"
                            for i, p in enumerate(gateways))
        config.write_text(HAPROXY_CFG.format(port=port, servers=servers))
        super().__init__("proxy", ["haproxy", "-db", "-f", str(config)], log_path=log_path)
        self.port = port


class Cluster:
    """The stack, the workers, the gateways and the proxy; tests drive one of these directly."""

    def __init__(self, base_dir: Path, ports: ClusterPorts, environ: Mapping[str, str] | None = None,
                 *, security: StackSecurity | None = None) -> None:
        """``security``: start every service secured and give the workers and gateways the
        matching CHAT_* settings (``StackSecurity.chat_env``)."""
        self.base_dir, self.ports, self.security = base_dir, ports, security
        env = dict(os.environ if environ is None else environ)
        env.setdefault("CHAT_REPLICATION_FACTOR", "3")
        env.setdefault("CHAT_MIN_INSYNC_REPLICAS", "2")
        env.setdefault("CHAT_CASSANDRA_REPLICATION_FACTOR", "1")  # one Cassandra node
        env.update(CHAT_TIMELINE_BACKEND="cassandra", CHAT_REDIS_CLUSTER="true", CHAT_DATA_DIR=str(base_dir),
                   PYTHONUNBUFFERED="1", **(security.chat_env() if security else {}))
        self.settings = Settings.from_env(env)
        self.stack = ClusterStack(base_dir, ports, self.settings, security=security)
        env.update(CHAT_KAFKA_BOOTSTRAP=self.stack.bootstrap, CHAT_REDIS_URL=self.stack.redis_url,
                   CHAT_CASSANDRA_HOSTS=self.stack.cassandra_hosts)
        self.env = env
        self.workers: list[Service] = []
        self.gateways: list[Gateway] = []
        self._numbers = {"worker": 0, "gateway": 0}
        for metrics in ports.workers_metrics:
            self.add_worker(metrics)
        for port in ports.gateways:
            self.add_gateway(port)
        self.proxy = Proxy(ports.proxy, ports.gateways, base_dir / "proxy", base_dir / "logs" / "proxy.log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports.proxy}"

    @property
    def apps(self) -> list[Service]:
        """Start order; the proxy last (``wait_healthy`` asks it)."""
        return [*self.workers, *self.gateways, self.proxy]

    def add_worker(self, metrics_port: int = 0) -> Service:
        self._numbers["worker"] += 1
        n = self._numbers["worker"]
        env = {**self.env, "CHAT_WORKER_ID": f"w{n}", "CHAT_WORKER_METRICS_PORT": str(metrics_port)}
        worker = Service(f"worker-{n}", [sys.executable, "-m", "streams.worker"], env=env, cwd=REPO,
                         log_path=self.base_dir / "logs" / f"worker-{n}.log")
        self.workers.append(worker)
        return worker

    def add_gateway(self, port: int) -> Gateway:
        self._numbers["gateway"] += 1
        n = self._numbers["gateway"]
        env = {**self.env, "CHAT_PORT": str(port), "CHAT_GATEWAY_ID": f"gw{n}"}
        gateway = Gateway(f"gateway-{n}", [sys.executable, "-m", "gateway"], env=env, cwd=REPO,
                          log_path=self.base_dir / "logs" / f"gateway-{n}.log")
        gateway.port = port
        self.gateways.append(gateway)
        return gateway

    def start(self, timeout: float = 180.0) -> "Cluster":
        """Everything, until ``/healthz`` through the proxy answers 200."""
        self.stack.start()
        try:
            for app in self.apps:
                app.start()
            wait_healthy(self.apps, timeout, threading.Event())
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        shutdown(self.stack, self.apps)  # type: ignore[arg-type]


def client_env_file(cluster: Cluster) -> Path:
    """``chat.env`` in the data directory (mode 0600): the CHAT_* settings of a process that
    connects to the cluster (addresses, and in secured mode the users, passwords and CA)."""
    names = ("CHAT_KAFKA_BOOTSTRAP", "CHAT_REDIS_URL", "CHAT_REDIS_CLUSTER", "CHAT_CASSANDRA_HOSTS",
             "CHAT_TIMELINE_BACKEND", *(cluster.security.chat_env() if cluster.security else ()))
    path = cluster.base_dir / "chat.env"
    path.write_text("".join(f"{name}={shlex.quote(cluster.env[name])}\n" for name in names))
    os.chmod(path, 0o600)
    return path


def make(argv: Sequence[str] | None, environ: Mapping[str, str]) -> Cluster:
    """The cluster ``main`` runs: ``--secured`` secures it (data under ``.data/cluster-secured``,
    new certificates at each start under its ``tls/``, the passwords kept there)."""
    parser = argparse.ArgumentParser(prog="python -m infra.cluster", description="make cluster")
    parser.add_argument("--secured", action="store_true",
                        help="Kafka SASL_SSL with SCRAM, Redis ACL and TLS, Cassandra password and TLS")
    args = parser.parse_args(argv)
    default = REPO / ".data" / ("cluster-secured" if args.secured else "cluster")
    base = Path(environ["CHAT_DATA_DIR"]).resolve() if "CHAT_DATA_DIR" in environ else default
    security = StackSecurity.kept(base / "tls") if args.secured else None
    return Cluster(base, ClusterPorts.fixed(Settings.from_env(environ).port), environ, security=security)


def main(argv: Sequence[str] | None = None) -> int:
    started = time.monotonic()
    cluster = make(argv, os.environ)
    base = cluster.base_dir
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda *_: stopping.set())
    code = 1
    try:
        mode = ", all secured" if cluster.security else ""
        log(f"starting 3 Kafka brokers, a 6-node Redis Cluster, Cassandra{mode} (data: {base})")
        cluster.stack.start()
        log(f"kafka {cluster.stack.bootstrap}; redis cluster {cluster.stack.redis_url}; "
            f"cassandra {cluster.stack.cassandra_hosts}; client settings {client_env_file(cluster)}")
        for app in cluster.apps:
            app.start()
        if wait_healthy(cluster.apps, 180.0, stopping):
            log(f"logs: {base / 'logs'}; gateways {', '.join(str(g.port) for g in cluster.gateways)}; "
                f"worker metrics {', '.join(map(str, cluster.ports.workers_metrics))}")
            print(f"Chat (cluster) is running at {cluster.url}/  (Ctrl-C to stop)", flush=True)
            print(f"started in {time.monotonic() - started:.1f}s", flush=True)
            code = supervise(cluster.stack, cluster.apps, stopping)  # type: ignore[arg-type]
        else:
            code = 0
    except ChatError as exc:
        log(f"failed: {exc}")
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        cluster.stop()
        log("stopped")
    return code


if __name__ == "__main__":
    sys.exit(main())
