"""The dependencies started together: Tansu (memory, or S3 on s3rver), Redis, and optionally a
Cassandra node for the timelines (``cassandra=True``).

    with LocalStack(tmp_path, durable=False, partitions=4) as stack:
        stack.bootstrap   # "127.0.0.1:PORT"
        stack.redis_url   # "redis://127.0.0.1:PORT/0"

Layout under ``base_dir``: ``logs/`` (one file per service), ``s3/`` (s3rver's buckets, durable
mode only), ``redis/`` (the append-only file), ``cassandra/`` (the node's data and config). An external
broker or Redis can be given instead (``kafka_bootstrap=`` / ``redis_url=``): then that service is
not started; ``stack.cassandra_hosts`` is ``None`` without a Cassandra node.
"""

from __future__ import annotations

import os
from pathlib import Path

from chat.settings import Settings
from infra.services import Redis, S3rver, Service, Tansu, free_port
from infra.topics import core_topic_configs, core_topics, ensure_topics


class LocalStack:
    def __init__(
        self,
        base_dir: str | os.PathLike[str],
        durable: bool = False,
        *,
        partitions: int = 4,
        replication_factor: int = 1,
        topics: dict[str, int] | None = None,
        topic_configs: dict[str, dict[str, str]] | None = None,
        kafka_port: int | None = None,
        s3_port: int | None = None,
        redis_port: int | None = None,
        kafka_bootstrap: str | None = None,
        redis_url: str | None = None,
        ready_timeout: float = 30.0,
        cassandra: bool = False,
        cassandra_port: int | None = None,
        cassandra_storage_port: int | None = None,
    ) -> None:
        self.base_dir = Path(base_dir).resolve()
        self.durable = durable
        core = Settings(partitions=partitions)
        self.topics = topics if topics is not None else core_topics(core)
        self.topic_configs = topic_configs if topic_configs is not None else core_topic_configs(core)
        self.replication_factor = replication_factor
        self.ready_timeout = ready_timeout
        logs = self.base_dir / "logs"
        self.s3rver: S3rver | None = None
        self.tansu: Tansu | None = None
        self.redis: Redis | None = None
        if kafka_bootstrap is None:
            if durable:
                self.s3rver = S3rver(s3_port or free_port(), self.base_dir / "s3", log_path=logs / "s3rver.log")
            self.tansu = Tansu(
                kafka_port or free_port(),
                storage="s3" if durable else "memory",
                s3_endpoint=self.s3rver.endpoint if self.s3rver else None,
                log_path=logs / "tansu.log",
            )
        if redis_url is None:
            self.redis = Redis(redis_port or free_port(), self.base_dir / "redis", log_path=logs / "redis.log")
        self.cassandra: Service | None = None
        self.cassandra_hosts: str | None = None
        if cassandra:
            from infra.cassandra import Cassandra

            node = Cassandra(self.base_dir / "cassandra", port=cassandra_port, storage_port=cassandra_storage_port,
                             log_path=logs / "cassandra.log")
            self.cassandra, self.cassandra_hosts = node, node.contact_point
        self.bootstrap = self.tansu.bootstrap if self.tansu else str(kafka_bootstrap)
        self.redis_url = self.redis.url if self.redis else str(redis_url)
        self._started: list[Service] = []

    @property
    def services(self) -> list[Service]:
        """The services this stack owns, in start order."""
        return [s for s in (self.cassandra, self.redis, self.s3rver, self.tansu) if s is not None]

    def start(self) -> "LocalStack":
        """Start every owned service, wait until each answers, then create the topics."""
        try:
            # Cassandra (the slowest), Redis and s3rver start side by side; Tansu needs s3rver up first.
            for service in (self.cassandra, self.redis, self.s3rver):
                if service is not None:
                    self._started.append(service.start())
            if self.s3rver is not None:
                self.s3rver.wait_ready(self.ready_timeout)
            if self.tansu is not None:
                self._started.append(self.tansu.start())
            for service in self._started:
                service.wait_ready(max(self.ready_timeout, 120.0) if service is self.cassandra else self.ready_timeout)
            ensure_topics(self.bootstrap, self.topics, self.replication_factor, timeout=self.ready_timeout,
                          configs=self.topic_configs)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop in reverse start order (Tansu before s3rver, so it never loses its storage)."""
        while self._started:
            self._started.pop().stop()

    def dead(self) -> list[Service]:
        """Owned services that were started and have exited since."""
        return [s for s in self._started if not s.running]

    def __enter__(self) -> "LocalStack":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
