"""Apache Kafka in KRaft mode as a child process, from the jars in ``.cache/jars/kafka``.

One node is broker and controller at once (combined mode) with a static one-voter quorum, so
formatting needs no ``--standalone``. The log directory is formatted once, on the first start;
later starts find it formatted and keep every record. Internal topics (consumer offsets,
transactions, share-group state) are created with the node's replication settings, so one node
works with replication factor 1 and a cluster with 3.

With ``security=KafkaSecurity(...)`` the client listener (and the brokers among themselves)
speak SASL_SSL with SCRAM: the users are created when the log directory is formatted, and the
first one is the brokers' own. ``node.client_config`` is what a client needs to connect.
"""

from __future__ import annotations

import base64
import os
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from infra.jars import java_argv
from infra.services import Service, ServiceError, free_port, port_open

LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = {level}
rootLogger.appenderRef.out.ref = OUT
logger.kafka.name = kafka
logger.kafka.level = {level}
logger.state.name = state.change.logger
logger.state.level = WARN
"""

# One node: every internal topic and the group coordinator's start-up wait fit it.
SINGLE_NODE = {
    "offsets.topic.replication.factor": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
}


@dataclass(frozen=True)
class KafkaSecurity:
    """SASL_SSL on the client and inter-broker listener: TLS with a PKCS#12 keystore (brokers
    trust the PEM ``ca`` file among themselves), SCRAM users (name -> password) made at format
    time; the first user is the brokers' own. The controller listener stays plaintext on loopback
    unless ``controller``: then it speaks SASL_SSL too, with PLAIN and the brokers' own user
    (KRaft reads SCRAM credentials from the metadata log, which the quorum must reach first;
    the setup Kafka's maintainers give in https://issues.apache.org/jira/browse/KAFKA-15513)."""
    keystore: Path
    keystore_password: str
    ca: Path
    users: Mapping[str, str] = field(default_factory=dict)
    mechanism: str = "SCRAM-SHA-512"
    controller: bool = False

    @property
    def controller_protocol(self) -> str:
        return "SASL_SSL" if self.controller else "PLAINTEXT"

    @property
    def broker_user(self) -> tuple[str, str]:
        return next(iter(self.users.items()))

    def properties(self) -> dict[str, str]:
        name, password = self.broker_user
        jaas = (f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{name}"'
                f' password="{password}";')
        return {**self._controller_properties(),
            "sasl.enabled.mechanisms": self.mechanism,
            "sasl.mechanism.inter.broker.protocol": self.mechanism,
            f"listener.name.sasl_ssl.{self.mechanism.lower()}.sasl.jaas.config": jaas,
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.location": str(self.keystore),
            "ssl.keystore.password": self.keystore_password,
            "ssl.key.password": self.keystore_password,
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.ca),
        }

    def _controller_properties(self) -> dict[str, str]:
        """PLAIN on the controller listener: each node signs in to the others as the brokers'
        user, and accepts only that user (the JAAS ``user_<name>`` entry)."""
        if not self.controller:
            return {}
        name, password = self.broker_user
        jaas = (f'org.apache.kafka.common.security.plain.PlainLoginModule required username="{name}"'
                f' password="{password}" user_{name}="{password}";')
        return {"sasl.mechanism.controller.protocol": "PLAIN",
                "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
                "listener.name.controller.plain.sasl.jaas.config": jaas}

    def format_args(self) -> list[str]:
        """``--add-scram`` arguments of ``kafka-storage format``: one per user."""
        return [arg for name, password in self.users.items()
                for arg in ("--add-scram", f"{self.mechanism}=[name={name},password={password}]")]

    def client_config(self, user: str | None = None) -> dict[str, str]:
        """librdkafka properties of a client signing in as ``user`` (default: the brokers' own)."""
        name = user or self.broker_user[0]
        return {"security.protocol": "sasl_ssl", "sasl.mechanism": self.mechanism, "sasl.username": name,
                "sasl.password": self.users[name], "ssl.ca.location": str(self.ca)}


def new_cluster_id() -> str:
    """A KRaft cluster id as ``kafka-storage random-uuid`` makes one: a random UUID in URL-safe
    base64 without padding (22 characters), never starting with '-' (Kafka's rule)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


class Kafka(Service):
    """One Apache Kafka node (broker and controller) on 127.0.0.1."""

    def __init__(
        self,
        port: int,
        data_dir: str | os.PathLike[str],
        *,
        log_path: str | os.PathLike[str],
        controller_port: int | None = None,
        node_id: int = 1,
        voters: Mapping[int, int] | None = None,
        properties: Mapping[str, str] | None = None,
        heap: str = "512m",
        log_level: str = "WARN",
        cluster_id: str | None = None,
        security: KafkaSecurity | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.controller_port = controller_port or free_port()
        self.node_id = node_id
        # node id -> controller port of every voter; one node alone votes for itself.
        self.voters = dict(voters) if voters else {node_id: self.controller_port}
        self.cluster_id = cluster_id
        self.security = security
        self.config_path = self.data_dir / "server.properties"
        self.log4j_path = self.data_dir / "log4j2.properties"
        self.extra_properties = dict(SINGLE_NODE if len(self.voters) == 1 else {})
        self.extra_properties.update(properties or {})
        self.log_level = log_level
        jvm = [f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
               "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={self.log4j_path}"]
        self.jvm = jvm
        super().__init__("kafka", java_argv("kafka", "kafka.Kafka", str(self.config_path), jvm=jvm),
                         log_path=log_path)
        self.port = port

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def client_config(self) -> dict[str, str]:
        """librdkafka properties besides ``bootstrap.servers`` that reach this node."""
        return self.security.client_config() if self.security else {}

    def server_properties(self) -> dict[str, str]:
        voters = ",".join(f"{n}@127.0.0.1:{p}" for n, p in sorted(self.voters.items()))
        listener = "SASL_SSL" if self.security else "PLAINTEXT"
        controller = self.security.controller_protocol if self.security else "PLAINTEXT"
        return {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": voters,
            "listeners": f"{listener}://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"{listener}://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": listener,
            "listener.security.protocol.map": f"{listener}:{listener},CONTROLLER:{controller}",
            "log.dirs": str(self.data_dir / "log"),
            # Topics are created up front with their counts and configs (infra.topics); a
            # topic that springs into being from a typo would get the wrong partition count.
            "auto.create.topics.enable": "false",
            "num.partitions": "1",
            **(self.security.properties() if self.security else {}),
            **self.extra_properties,
        }

    def _write_config(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        props = "".join(f"{k}={v}\n" for k, v in self.server_properties().items())
        self.config_path.write_text(props)
        self.log4j_path.write_text(LOG4J2.format(level=self.log_level))

    def _format(self) -> None:
        """Format the log directory on its first start (``meta.properties`` says it is done)."""
        if (self.data_dir / "log" / "meta.properties").exists():
            return
        cluster_id = self.cluster_id or new_cluster_id()
        argv = java_argv("kafka", "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c",
                         str(self.config_path), "--ignore-formatted",
                         *(self.security.format_args() if self.security else ()), jvm=self.jvm)
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise ServiceError(f"formatting {self.data_dir} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


    def start(self) -> "Kafka":
        # Service.start checks the broker's port; the controller's is this node's own.
        if port_open(self.controller_port):
            raise ServiceError(f"kafka: controller port {self.controller_port} is already in use"
                               " (another instance running?)")
        self._write_config()
        self._format()
        super().start()
        return self

    def ready(self) -> bool:
        """The broker answers metadata with itself as a broker (it has joined its own quorum)."""
        if not (self.running and port_open(self.port)):
            return False
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0, **self.client_config})
        return bool(admin.list_topics(timeout=2).brokers)
