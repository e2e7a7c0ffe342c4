"""The dependencies of ``make cluster``, started together on loopback: three Apache Kafka nodes
in one KRaft quorum (each broker and controller), one Apache Cassandra node, and a Redis
Cluster of three masters with a replica each.

    stack = ClusterStack(base_dir, ClusterPorts.free(), settings)
    stack.start()          # every node up, the quorum formed, the core topics made (RF 3, min ISR 2)
    stack.bootstrap        # "127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3"
    stack.redis_url        # one Redis Cluster node; CHAT_REDIS_CLUSTER=true finds the others
    stack.cassandra_hosts  # "127.0.0.1:PORT"
    stack.stop()

Layout under ``base_dir``: ``kafka-<n>/``, ``redis-cluster/``, ``cassandra/``, ``logs/``. Each
keeps its data across restarts on the same ``base_dir`` and ports (the Kafka cluster id is kept
in ``kafka-cluster-id``: the three logs must be formatted with one id).

``security=infra.security.StackSecurity`` secures every node as ``LocalStack`` secures its
one: Kafka SASL_SSL with SCRAM for clients and between brokers, SASL_SSL with PLAIN between
the controllers; the Redis Cluster with an ACL user, TLS on clients, bus and replication;
Cassandra with a password role over TLS. ``security.chat_env()`` is what a client adds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from chat.settings import Settings
from infra.kafka import Kafka, new_cluster_id
from infra.redis_cluster import RedisCluster
from infra.security import StackSecurity
from infra.services import Service, free_port
from infra.topics import core_topic_configs, core_topics, ensure_topics

BROKERS = 3

# What every node of the three says: replication 3, acks=all needs 2 in sync, and no replica
# that missed records may become leader. The internal topics follow Kafka's defaults (3, min 2).
KAFKA_CLUSTER = {
    "default.replication.factor": "3",
    "min.insync.replicas": "2",
    "unclean.leader.election.enable": "false",
    "offsets.topic.replication.factor": "3",
    "transaction.state.log.replication.factor": "3",
    "transaction.state.log.min.isr": "2",
    "group.initial.rebalance.delay.ms": "0",
}


@dataclass(frozen=True)
class ClusterPorts:
    """The loopback ports of every listener of the cluster."""

    kafka: tuple[int, ...]
    controllers: tuple[int, ...]
    redis: tuple[int, ...]
    redis_bus: tuple[int, ...]
    cassandra: int
    cassandra_storage: int
    gateways: tuple[int, ...]
    workers_metrics: tuple[int, ...]
    proxy: int

    @classmethod
    def fixed(cls, proxy: int = 8080) -> "ClusterPorts":
        """``make cluster``'s ports, beside (not on) ``make run``'s."""
        return cls(kafka=(19192, 19193, 19194), controllers=(19195, 19196, 19197),
                   redis=tuple(range(16380, 16386)), redis_bus=tuple(range(26380, 26386)), cassandra=19142, cassandra_storage=17100,
                   gateways=(8081, 8082), workers_metrics=(9464, 9465), proxy=proxy)

    @classmethod
    def free(cls) -> "ClusterPorts":
        """Free ports everywhere (tests), no two alike."""
        taken: set[int] = set()

        def some(n: int) -> tuple[int, ...]:
            drawn: list[int] = []
            while len(drawn) < n:
                port = free_port()
                if port not in taken:
                    taken.add(port)
                    drawn.append(port)
            return tuple(drawn)
        return cls(kafka=some(3), controllers=some(3), redis=some(6), redis_bus=some(6), cassandra=some(1)[0],
                   cassandra_storage=some(1)[0], gateways=some(2), workers_metrics=some(2), proxy=some(1)[0])


def cluster_id(base_dir: Path) -> str:
    """The Kafka cluster id of this directory, made on the first start and kept."""
    path = base_dir / "kafka-cluster-id"
    if not path.exists():
        base_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(new_cluster_id())
    return path.read_text().strip()


class ClusterStack:
    def __init__(self, base_dir: str | os.PathLike[str], ports: ClusterPorts, settings: Settings,
                 *, ready_timeout: float = 120.0, security: StackSecurity | None = None) -> None:
        from infra.cassandra import Cassandra

        self.base_dir = Path(base_dir).resolve()
        self.settings = settings
        self.ready_timeout = ready_timeout
        self.security = security
        logs = self.base_dir / "logs"
        voters = {n + 1: ports.controllers[n] for n in range(BROKERS)}
        cid = cluster_id(self.base_dir)
        kafka_security = security.kafka(controller=True) if security else None
        self.kafkas = [Kafka(ports.kafka[n], self.base_dir / f"kafka-{n + 1}", log_path=logs / f"kafka-{n + 1}.log",
                             controller_port=ports.controllers[n], node_id=n + 1, voters=voters, cluster_id=cid,
                             properties=KAFKA_CLUSTER, heap="384m", security=kafka_security)
                       for n in range(BROKERS)]
        for n, node in enumerate(self.kafkas):
            node.name = f"kafka-{n + 1}"
        self.redis = RedisCluster(self.base_dir / "redis-cluster", ports.redis, bus_ports=ports.redis_bus, logs=logs,
                                  users=security and security.redis_users, tls=security and security.certs)
        self.cassandra = Cassandra(self.base_dir / "cassandra", port=ports.cassandra,
                                   storage_port=ports.cassandra_storage, log_path=logs / "cassandra.log",
                                   password_auth=security is not None, tls=security and security.certs)
        self.bootstrap = ",".join(k.bootstrap for k in self.kafkas)
        self.redis_url = self.redis.url
        self.cassandra_hosts = self.cassandra.contact_point
        self._started = False

    @property
    def client_config(self) -> dict[str, str]:
        """librdkafka properties besides ``bootstrap.servers`` that reach the brokers."""
        return self.kafkas[0].client_config

    @property
    def services(self) -> list[Service]:
        return [self.cassandra, *self.redis.nodes, *self.kafkas]

    def kafka_by_id(self, node_id: int) -> Kafka:
        return self.kafkas[node_id - 1]

    def start(self) -> "ClusterStack":
        """Start every node side by side, wait for each, form the Redis Cluster, make the topics."""
        self._started = True
        try:
            self.cassandra.start()
            self.redis.start()
            for node in self.kafkas:  # together: the quorum needs two of three
                node.start()
            for node in self.kafkas:
                node.wait_ready(self.ready_timeout)
            self.redis.wait_ready(self.ready_timeout)
            self.cassandra.wait_ready(max(self.ready_timeout, 120.0))
            self.cassandra.wait_serving(max(self.ready_timeout, 120.0))
            if self.security is not None:
                self.cassandra.ensure_role(self.security.user, self.security.cassandra_password)
            ensure_topics(self.bootstrap, core_topics(self.settings), self.settings.replication_factor,
                          timeout=self.ready_timeout, configs=core_topic_configs(self.settings),
                          client_config=self.client_config)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Kafka first (its clients are gone by now), then Redis, then Cassandra."""
        for node in reversed(self.kafkas):
            node.stop()
        self.redis.stop()
        self.cassandra.stop()

    def dead(self) -> list[Service]:
        """Nodes that were started and have exited since."""
        return [s for s in self.services if s.proc is not None and not s.running] if self._started else []

    def __enter__(self) -> "ClusterStack":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
