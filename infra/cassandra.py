"""One Apache Cassandra 5.0 node from the Maven Central jars (``.cache/jars/cassandra``).

    with Cassandra(tmp_path / "cassandra") as node:
        node.contact_point   # "127.0.0.1:PORT", for CHAT_CASSANDRA_HOSTS

Everything lives under ``base_dir``: ``conf/`` (the ``cassandra.yaml`` and ``logback.xml`` this
module writes at each start), ``data/``, ``commitlog/``, ``saved_caches/``, ``hints/``,
``cdc_raw/`` and ``logs/``; the process's own output (Cassandra's log, at INFO for its own
loggers and WARN for the rest) goes to ``log_path``, ``base_dir/cassandra.log`` by default.
Started again on the same ``base_dir`` it has the same data (on the same ports or others).

It is a single-node ring with one token at 0 that does not bootstrap, waits for no gossip and
takes no snapshots; ready once the native transport answers a CQL ``OPTIONS`` request.

Secured (``password_auth=True``, ``tls=infra.certs.Certs``): clients sign in with a role's
password (``PasswordAuthenticator``; the default superuser is cassandra/cassandra, and
``ensure_role`` makes others) and the native transport speaks TLS only.
"""

from __future__ import annotations

import os
import socket
import ssl
import time
from pathlib import Path
from typing import Any

from infra.jars import jar_dir, java_argv
from infra.services import Service, ServiceError, free_port

MAIN_CLASS = "org.apache.cassandra.service.CassandraDaemon"
DIRECTORIES = ("data", "commitlog", "saved_caches", "hints", "cdc_raw", "triggers", "logs")
DEFAULT_HEAP = "512M"  # the most it may take (-Xmx) ...
DEFAULT_HEAP_INITIAL = "128M"  # ... and what it commits, and so locks, at start (-Xms)
STOP_TIMEOUT_S = 30.0  # SIGTERM runs Cassandra's drain hook, which flushes the memtables

# The JPMS and Netty lines of Cassandra 5.0's conf/jvm17-server.options, as they are there.
JVM17_SERVER_OPTIONS = (
    "-Djdk.attach.allowAttachSelf=true",
    "--add-exports", "java.base/jdk.internal.misc=ALL-UNNAMED",
    "--add-exports", "java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED",
    "--add-exports", "java.rmi/sun.rmi.registry=ALL-UNNAMED",
    "--add-exports", "java.rmi/sun.rmi.server=ALL-UNNAMED",
    "--add-exports", "java.sql/java.sql=ALL-UNNAMED",
    "--add-exports", "java.base/java.lang.ref=ALL-UNNAMED",
    "--add-exports", "jdk.unsupported/sun.misc=ALL-UNNAMED",
    "--add-exports", "jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED",
    "--add-exports", "jdk.attach/sun.tools.attach=ALL-UNNAMED",
    "--add-opens", "java.base/java.lang.module=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.loader=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.ref=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.reflect=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.math=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.module=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.util.jar=ALL-UNNAMED",
    "--add-opens", "jdk.management/com.sun.management.internal=ALL-UNNAMED",
    "--add-opens", "java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens", "java.base/java.io=ALL-UNNAMED",
    "--add-opens", "java.base/java.lang.reflect=ALL-UNNAMED",
    "--add-opens", "jdk.compiler/com.sun.tools.javac=ALL-UNNAMED",
    "--add-opens", "java.base/java.lang=ALL-UNNAMED",
    "--add-opens", "java.base/java.util=ALL-UNNAMED",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Dio.netty.allocator.useCacheForAllThreads=true",
    "-Dio.netty.allocator.maxOrder=11",
)
# Its G1 lines, without -XX:G1HeapRegionSize=16m (meant for heaps of several GB; G1 picks 1 MB
# regions for a small one), and what jvm-server.options and cassandra-env.sh add that matters here.
GC_OPTIONS = ("-XX:+UseG1GC", "-XX:+ParallelRefProcEnabled", "-XX:MaxTenuringThreshold=1",
              "-XX:G1RSetUpdatingPauseTimePercent=5", "-XX:MaxGCPauseMillis=300",
              "-XX:InitiatingHeapOccupancyPercent=70")
SERVER_OPTIONS = ("-Xss256k", "-XX:+PerfDisableSharedMem", "-XX:+ExitOnOutOfMemoryError",
                  "-Djava.net.preferIPv4Stack=true")
# A single local node: start without waiting for gossip or a ring delay, create the default
# superuser at once, and stop without the 2 s pause after announcing the shutdown to peers (it
# has none). System properties of Cassandra's CassandraRelevantProperties.
FAST_SINGLE_NODE = ("-Dcassandra.skip_wait_for_gossip_to_settle=0", "-Dcassandra.ring_delay_ms=1000",
                    "-Dcassandra.superuser_setup_delay_ms=0", "-Dcassandra.shutdown_announce_in_ms=0")

LOGBACK_XML = """\
<configuration scan="false">
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %logger{0} - %msg%n</pattern></encoder>
  </appender>
  <logger name="org.apache.cassandra" level="INFO"/>
  <root level="WARN"><appender-ref ref="STDOUT"/></root>
</configuration>
"""

# A CQL OPTIONS request (protocol v4 header: version, flags, stream 0, opcode 0x05, no body).
_OPTIONS_FRAME = bytes([0x04, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00])
_SUPPORTED = 0x06


class Cassandra(Service):
    """A Cassandra node as a child process (see the module docstring)."""

    def __init__(
        self,
        base_dir: str | os.PathLike[str],
        *,
        port: int | None = None,
        storage_port: int | None = None,
        heap: str = DEFAULT_HEAP,
        heap_initial: str = DEFAULT_HEAP_INITIAL,
        cluster_name: str = "chat-local",
        log_path: str | os.PathLike[str] | None = None,
        settings: dict[str, object] | None = None,
        jvm: tuple[str, ...] = (),
        password_auth: bool = False,
        tls: Any = None,
    ) -> None:
        """``settings`` are more ``cassandra.yaml`` entries (scalars), over the ones written here;
        ``jvm`` more JVM options, after the ones here."""
        self.base_dir = Path(base_dir).resolve()
        self.storage_port = storage_port or free_port()
        self.heap = heap
        self.cluster_name = cluster_name
        self.extra_settings = dict(settings or {})
        self.password_auth = password_auth
        self.tls = tls
        conf = self.base_dir / "conf"
        options = [
            f"-Xms{heap_initial}", f"-Xmx{heap}", *GC_OPTIONS, *SERVER_OPTIONS, *JVM17_SERVER_OPTIONS,
            f"-javaagent:{jamm_jar()}",
            "-Dcassandra-foreground=yes",
            f"-Dcassandra.config=file://{conf / 'cassandra.yaml'}",
            f"-Dcassandra.storagedir={self.base_dir}",
            f"-Dcassandra.logdir={self.base_dir / 'logs'}",
            f"-Dlogback.configurationFile={conf / 'logback.xml'}",
            f"-Dcassandra.triggers_dir={self.base_dir / 'triggers'}",
            *FAST_SINGLE_NODE, *jvm,
        ]
        super().__init__("cassandra", java_argv("cassandra", MAIN_CLASS, jvm=options),
                         log_path=log_path or self.base_dir / "cassandra.log", cwd=self.base_dir)
        self.port = port or free_port()

    @property
    def contact_point(self) -> str:
        """``host:port`` of the native transport, as ``CHAT_CASSANDRA_HOSTS`` takes it."""
        return f"127.0.0.1:{self.port}"

    def config(self) -> dict[str, object]:
        """The ``cassandra.yaml`` entries this node runs with."""
        d = self.base_dir
        return {
            "cluster_name": self.cluster_name,
            "num_tokens": 1,
            "initial_token": 0,
            "partitioner": "org.apache.cassandra.dht.Murmur3Partitioner",
            "endpoint_snitch": "SimpleSnitch",
            "listen_address": "127.0.0.1",
            "rpc_address": "127.0.0.1",
            "storage_port": self.storage_port,
            "native_transport_port": self.port,
            "start_native_transport": True,
            "auto_bootstrap": False,
            "auto_snapshot": False,
            "data_file_directories": [str(d / "data")],
            "commitlog_directory": str(d / "commitlog"),
            "saved_caches_directory": str(d / "saved_caches"),
            "hints_directory": str(d / "hints"),
            "cdc_raw_directory": str(d / "cdc_raw"),
            "commitlog_sync": "periodic",
            "commitlog_sync_period": "10000ms",
            **self._security(),
            **self.extra_settings,
        }

    def _security(self) -> dict[str, object]:
        entries: dict[str, object] = {}
        if self.password_auth:
            entries["authenticator"] = "PasswordAuthenticator"
        if self.tls is not None:
            entries["client_encryption_options"] = {
                "enabled": True, "optional": False, "keystore": str(self.tls.server_p12),
                "keystore_password": self.tls.password, "store_type": "PKCS12", "require_client_auth": False}
        return entries

    def write_config(self) -> None:
        for name in DIRECTORIES:
            (self.base_dir / name).mkdir(parents=True, exist_ok=True)
        conf = self.base_dir / "conf"
        conf.mkdir(parents=True, exist_ok=True)
        seeds = f"127.0.0.1:{self.storage_port}"
        yaml = "".join(f"{key}: {_yaml(value)}\n" for key, value in self.config().items())
        yaml += ("seed_provider:\n  - class_name: org.apache.cassandra.locator.SimpleSeedProvider\n"
                 f"    parameters:\n      - seeds: \"{seeds}\"\n")
        (conf / "cassandra.yaml").write_text(yaml, encoding="utf-8")
        (conf / "logback.xml").write_text(LOGBACK_XML, encoding="utf-8")

    def start(self) -> "Cassandra":
        self.write_config()
        super().start()
        return self

    def ready(self) -> bool:
        """The native transport answers an ``OPTIONS`` request with ``SUPPORTED``."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as raw:
            s = raw
            if self.tls is not None:
                s = ssl.create_default_context(cafile=str(self.tls.ca)).wrap_socket(raw, server_hostname="127.0.0.1")
            s.sendall(_OPTIONS_FRAME)
            header = s.recv(9)
        return len(header) >= 5 and header[4] == _SUPPORTED

    def cluster_options(self, user: str = "cassandra", password: str = "cassandra") -> dict[str, Any]:
        """The driver's ``Cluster`` arguments that reach this node as ``user``."""
        options: dict[str, Any] = {}
        if self.password_auth:
            from cassandra.auth import PlainTextAuthProvider

            options["auth_provider"] = PlainTextAuthProvider(username=user, password=password)
        if self.tls is not None:
            options["ssl_context"] = ssl.create_default_context(cafile=str(self.tls.ca))
        return options

    def ensure_role(self, name: str, password: str, timeout: float = 60.0) -> None:
        """A login role ``name`` with ``password`` (made by the default superuser, which the
        node creates a moment after it starts listening: retried until ``timeout``)."""
        if not name.isidentifier():
            raise ValueError(f"role name {name!r}: letters, digits and _ only")
        self._with_session(lambda session: session.execute(
            "CREATE ROLE IF NOT EXISTS %s WITH PASSWORD = %%s AND LOGIN = true" % name, (password,)), timeout)

    def wait_serving(self, timeout: float = 120.0) -> None:
        """Block until a driver session connects and reads ``system.local`` (retried until
        ``timeout``). ``ready`` sees only the transport answer; on a loaded machine the first
        sessions of a fresh node can take longer than a client's connect timeout (5 s), so
        the processes of a whole cluster start only after this one got through."""
        self._with_session(lambda session: session.execute("SELECT release_version FROM system.local"),
                           timeout, connect_timeout=10)

    def _with_session(self, work: Any, timeout: float, **options: Any) -> None:
        """``work(session)`` on a fresh driver session to this node, connecting again every
        0.5 s while no host is available, until ``timeout``; the session is shut down after."""
        from cassandra.cluster import Cluster, NoHostAvailable

        deadline = time.monotonic() + timeout
        while True:
            cluster = Cluster([("127.0.0.1", self.port)], protocol_version=5, **options, **self.cluster_options())
            try:
                work(cluster.connect())
                return
            except NoHostAvailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
            finally:
                cluster.shutdown()

    def wait_ready(self, timeout: float = 120.0) -> "Cassandra":
        super().wait_ready(timeout)
        return self

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        return super().stop(timeout)


def jamm_jar() -> Path:
    """Cassandra's object-size agent, which it expects to be loaded with ``-javaagent``."""
    found = sorted(jar_dir("cassandra").glob("jamm-*.jar"))
    if not found:
        raise ServiceError(f"no jamm-*.jar in {jar_dir('cassandra')}: run `bash infra/install.sh --cassandra`")
    return found[-1]


def _yaml(value: object) -> str:
    """A scalar, or a list or map of them, in YAML flow style (strings quoted as JSON, which YAML reads)."""
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yaml(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value))
