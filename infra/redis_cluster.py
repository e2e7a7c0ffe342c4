"""A Redis Cluster of Debian's ``redis-server`` processes on loopback: 3 masters, each with one
replica, so a killed master's replica takes over (``cluster-node-timeout`` 2 s).

    cluster = RedisCluster(base_dir, ports=[p1, ..., p6])
    cluster.start(); cluster.wait_ready()   # nodes up, ``redis-cli --cluster create`` run once
    cluster.url                              # "redis://127.0.0.1:<p1>/0": any node seeds a client
    cluster.stop()

``users`` (name -> password) and ``tls`` (``infra.certs.Certs``) secure it as ``Redis`` secures
one server: ACL users, the default user off, TLS only; then the cluster bus and replication
speak TLS too (nodes present the client certificate), and a replica signs in to its master as
the first user.

Each node keeps its ``nodes.conf`` and append-only file under ``base_dir/node-<port>``, so a
second start on the same directory finds the cluster formed and does not create it again.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from infra.services import Redis, ServiceError, free_port

NODE_TIMEOUT_MS = 2000
MASTERS = 3


class RedisClusterNode(Redis):
    """One ``redis-server`` with cluster mode on; its cluster bus on ``bus_port`` (a free port
    by default: Redis's own choice, port + 10000, may be taken, or not exist above 55535)."""

    def __init__(self, port: int, data_dir: Path, *, log_path: Path, bus_port: int | None = None,
                 users: Mapping[str, str] | None = None, tls: Any = None) -> None:
        super().__init__(port, data_dir, log_path=log_path, users=users, tls=tls)
        self.name = f"redis-{port}"
        self.bus_port = bus_port or free_port()
        self.argv += ["--cluster-enabled", "yes", "--cluster-config-file", str(data_dir.resolve() / "nodes.conf"),
                      "--cluster-node-timeout", str(NODE_TIMEOUT_MS), "--cluster-port", str(self.bus_port)]
        if tls is not None:  # the bus and replication over TLS, with the client certificate
            self.argv += ["--tls-cluster", "yes", "--tls-replication", "yes",
                          "--tls-client-cert-file", str(tls.client_cert), "--tls-client-key-file", str(tls.client_key)]
        if self.users:  # a replica signs in to its master as the first user
            name, password = next(iter(self.users.items()))
            self.argv += ["--masteruser", name, "--masterauth", password]

    def command(self, *args: str) -> str:
        """One inline command's reply line (for INFO-like probes)."""
        with self.connect() as s:
            s.sendall((" ".join(args) + "\r\n").encode())
            return s.recv(65536).decode(errors="replace")

    def cli_args(self) -> list[str]:
        """``redis-cli`` options that reach this node (TLS, the first user)."""
        args = ["--tls", "--cacert", str(self.tls.ca)] if self.tls is not None else []
        if self.users:
            name, password = next(iter(self.users.items()))
            args += ["--user", name, "--pass", password, "--no-auth-warning"]
        return args


class RedisCluster:
    """Six nodes: the first three become masters, the others their replicas."""

    def __init__(self, base_dir: str | os.PathLike[str], ports: Sequence[int] | None = None, *,
                 bus_ports: Sequence[int] | None = None, logs: str | os.PathLike[str] | None = None,
                 users: Mapping[str, str] | None = None, tls: Any = None) -> None:
        self.base_dir = Path(base_dir).resolve()
        ports = list(ports) if ports else [free_port() for _ in range(2 * MASTERS)]
        if len(ports) != 2 * MASTERS:
            raise ValueError(f"a Redis Cluster here has {2 * MASTERS} nodes, not {len(ports)}")
        log_dir = Path(logs) if logs else self.base_dir / "logs"
        buses = list(bus_ports) if bus_ports else [0] * len(ports)
        self.nodes = [RedisClusterNode(p, self.base_dir / f"node-{p}", log_path=log_dir / f"redis-{p}.log",
                                       bus_port=b or None, users=users, tls=tls)
                      for p, b in zip(ports, buses)]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self) -> "RedisCluster":
        for node in self.nodes:
            node.start()
        return self

    def wait_ready(self, timeout: float = 60.0) -> "RedisCluster":
        """Every node answers, the cluster is formed (once) and reports ``cluster_state:ok``."""
        for node in self.nodes:
            node.wait_ready(timeout)
        if "cluster_known_nodes:1\r" in self.nodes[0].command("CLUSTER", "INFO"):
            self._create()
        deadline = time.monotonic() + timeout
        while not all("cluster_state:ok" in n.command("CLUSTER", "INFO") for n in self.nodes):
            if time.monotonic() > deadline:
                raise ServiceError(f"redis cluster not ok after {timeout:.0f}s: {self.nodes[0].command('CLUSTER', 'INFO')}")
            time.sleep(0.2)
        return self

    def _create(self) -> None:
        addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
        done = subprocess.run(["redis-cli", *self.nodes[0].cli_args(), "--cluster", "create", *addresses,
                               "--cluster-replicas", "1", "--cluster-yes"], capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise ServiceError(f"redis-cli --cluster create failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")

    def masters(self) -> list[RedisClusterNode]:
        """The running nodes that are masters now (after a failover, a former replica)."""
        return [n for n in self.nodes if n.running and "role:master" in n.command("INFO", "replication")]

    def master_of(self, key: str) -> RedisClusterNode:
        """The running master that serves ``key``'s slot."""
        slot = int(self.nodes[0].command("CLUSTER", "KEYSLOT", key).strip().lstrip(":"))
        for node in self.masters():
            for line in node.command("CLUSTER", "NODES").splitlines():
                if "myself" in line:
                    for part in line.split()[8:]:
                        lo, _, hi = part.partition("-")
                        if lo.isdigit() and int(lo) <= slot <= int(hi or lo):
                            return node
        raise ServiceError(f"no running master serves slot {slot}")

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()

    def dead(self) -> list[RedisClusterNode]:
        return [n for n in self.nodes if n.proc is not None and not n.running]

    def __enter__(self) -> "RedisCluster":
        try:
            return self.start().wait_ready()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
