"""The dependencies started together: Apache Kafka (one KRaft node), Redis, and optionally a
Cassandra node for the timelines (``cassandra=True``).

    with LocalStack(tmp_path, partitions=4) as stack:
        stack.bootstrap   # "127.0.0.1:PORT"
        stack.redis_url   # "redis://127.0.0.1:PORT/0"

Layout under ``base_dir``: ``logs/`` (one file per service), ``kafka/`` (the broker's log and
metadata), ``redis/`` (the append-only file), ``cassandra/`` (the node's data and config). Each
keeps its data across restarts on the same ``base_dir``. An external broker or Redis can be given
instead (``kafka_bootstrap=`` / ``redis_url=``): then that service is not started;
``stack.cassandra_hosts`` is ``None`` without a Cassandra node.

``security=infra.security.StackSecurity`` starts every service secured (Kafka SASL_SSL with
SCRAM, Redis ACL and TLS, Cassandra password and TLS); ``security.chat_env()`` is then what a
process needs besides the addresses.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from chat.settings import Settings
from infra.kafka import Kafka
from infra.services import Redis, Service, free_port
from infra.topics import core_topic_configs, core_topics, ensure_topics


class LocalStack:
    def __init__(
        self,
        base_dir: str | os.PathLike[str],
        *,
        partitions: int = 4,
        replication_factor: int = 1,
        topics: dict[str, int] | None = None,
        topic_configs: dict[str, dict[str, str]] | None = None,
        kafka_port: int | None = None,
        controller_port: int | None = None,
        redis_port: int | None = None,
        kafka_bootstrap: str | None = None,
        redis_url: str | None = None,
        ready_timeout: float = 30.0,
        cassandra: bool = False,
        cassandra_port: int | None = None,
        cassandra_storage_port: int | None = None,
        security: Any = None,
    ) -> None:
        self.base_dir = Path(base_dir).resolve()
        core = Settings(partitions=partitions)
        self.topics = topics if topics is not None else core_topics(core)
        self.topic_configs = topic_configs if topic_configs is not None else core_topic_configs(core)
        self.replication_factor = replication_factor
        self.ready_timeout = ready_timeout
        self.security = security
        logs = self.base_dir / "logs"
        self.kafka: Kafka | None = None
        self.redis: Redis | None = None
        if kafka_bootstrap is None:
            self.kafka = Kafka(kafka_port or free_port(), self.base_dir / "kafka", log_path=logs / "kafka.log",
                               controller_port=controller_port, security=security and security.kafka())
        if redis_url is None:
            self.redis = Redis(redis_port or free_port(), self.base_dir / "redis", log_path=logs / "redis.log",
                               users=security and security.redis_users, tls=security and security.certs)
        self.cassandra: Service | None = None
        self.cassandra_hosts: str | None = None
        if cassandra:
            from infra.cassandra import Cassandra

            node = Cassandra(self.base_dir / "cassandra", port=cassandra_port, storage_port=cassandra_storage_port,
                             log_path=logs / "cassandra.log", password_auth=security is not None,
                             tls=security and security.certs)
            self.cassandra, self.cassandra_hosts = node, node.contact_point
        self.bootstrap = self.kafka.bootstrap if self.kafka else str(kafka_bootstrap)
        self.redis_url = self.redis.url if self.redis else str(redis_url)
        self._started: list[Service] = []

    @property
    def client_config(self) -> dict[str, str]:
        """librdkafka properties besides ``bootstrap.servers`` that reach the broker."""
        return self.kafka.client_config if self.kafka else {}

    @property
    def services(self) -> list[Service]:
        """The services this stack owns, in start order."""
        return [s for s in (self.cassandra, self.redis, self.kafka) if s is not None]

    def start(self) -> "LocalStack":
        """Start every owned service, wait until each answers, then create the topics."""
        try:
            for service in self.services:  # side by side: none needs another
                self._started.append(service.start())
            for service in self._started:
                service.wait_ready(max(self.ready_timeout, 120.0) if service is self.cassandra else self.ready_timeout)
            if self.security is not None and self.cassandra is not None:
                self.cassandra.ensure_role(self.security.user, self.security.cassandra_password)
            ensure_topics(self.bootstrap, self.topics, self.replication_factor, timeout=self.ready_timeout,
                          configs=self.topic_configs, client_config=self.client_config)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop in reverse start order."""
        while self._started:
            self._started.pop().stop()

    def dead(self) -> list[Service]:
        """Owned services that were started and have exited since."""
        return [s for s in self._started if not s.running]

    def __enter__(self) -> "LocalStack":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
