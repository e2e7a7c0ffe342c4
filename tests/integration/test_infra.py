"""The infra layer against real processes: Apache Kafka, Redis, topics, Cassandra."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import defaultdict

import pytest
import redis
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from infra.kafka import Kafka
from infra.services import Redis, Service, ServiceError, free_port, port_open
from infra.stack import LocalStack
from infra.topics import TopicMismatch, ensure_topics

QUIET = {"log_level": 0}  # librdkafka logs every refused connection while a broker restarts


def partition_counts(bootstrap: str) -> dict[str, int]:
    meta = AdminClient({"bootstrap.servers": bootstrap, **QUIET}).list_topics(timeout=10)
    return {name: len(t.partitions) for name, t in meta.topics.items()}


@pytest.fixture
def stack(tmp_path):
    with LocalStack(tmp_path, partitions=3) as s:
        yield s


def test_stack_creates_core_topics(stack):
    counts = partition_counts(stack.bootstrap)
    assert counts["chat.commands"] == 3
    assert counts["chat.events"] == 3


def test_ensure_topics_exact_counts_idempotent_and_checked(stack):
    specs = {"t.one": 1, "t.six": 6}
    assert ensure_topics(stack.bootstrap, specs) == specs
    assert ensure_topics(stack.bootstrap, specs) == specs  # a no-op the second time
    counts = partition_counts(stack.bootstrap)
    assert counts["t.one"] == 1 and counts["t.six"] == 6
    with pytest.raises(TopicMismatch, match="t.six has 6 partitions, 4 asked"):
        ensure_topics(stack.bootstrap, {"t.six": 4})


def test_redis_answers_and_stop_leaves_nothing_listening(tmp_path):
    stack = LocalStack(tmp_path).start()
    ports = [s.port for s in stack.services]
    client = redis.Redis.from_url(stack.redis_url)
    assert client.ping() is True
    client.set("k", "v")
    client.close()
    stack.stop()
    assert all(not s.running for s in stack.services)
    assert not any(port_open(p) for p in ports)
    assert (tmp_path / "redis" / "appendonlydir").is_dir()  # AOF on


def produce(bootstrap: str, topic: str, n: int) -> list[tuple[bytes, bytes]]:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, **QUIET})
    sent = [(f"user-{i % 7}".encode(), f"msg-{i:03d}".encode()) for i in range(n)]
    for key, value in sent:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(10) == 0
    return sent


def consume_to_end(bootstrap: str, topic: str, partitions: int) -> list:
    """Every record of ``topic``, read up to each partition's high watermark."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "test-infra", "enable.auto.commit": False,
                         **QUIET})
    ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)}
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got, deadline = [], time.monotonic() + 15
    while sum(ends.values()) > len(got) and time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is not None and not msg.error():
            got.append(msg)
    consumer.close()
    return got


def test_records_survive_a_broker_restart(tmp_path):
    logs = tmp_path / "logs"
    port, controller = free_port(), free_port()
    with Kafka(port, tmp_path / "kafka", controller_port=controller, log_path=logs / "kafka.log") as broker:
        ensure_topics(broker.bootstrap, {"durable": 3})
        sent = produce(broker.bootstrap, "durable", 50)
    assert not port_open(port)

    with Kafka(port, tmp_path / "kafka", controller_port=controller, log_path=logs / "kafka.log") as broker:
        assert ensure_topics(broker.bootstrap, {"durable": 3}) == {"durable": 3}
        got = consume_to_end(broker.bootstrap, "durable", 3)
        produce(broker.bootstrap, "durable", 5)  # offsets go on after the stored ones
        assert len(consume_to_end(broker.bootstrap, "durable", 3)) == 55

    assert sorted((m.key(), m.value()) for m in got) == sorted(sent)
    by_partition = defaultdict(list)
    for m in got:
        by_partition[m.partition()].append(m)
    for msgs in by_partition.values():  # offsets dense from 0, and each key in send order
        assert [m.offset() for m in msgs] == list(range(len(msgs)))
    by_key = defaultdict(list)
    for m in got:
        by_key[m.key()].append(m.value())
    for key, values in by_key.items():
        assert values == [v for k, v in sent if k == key]


def test_stop_escalates_to_sigkill(tmp_path):
    svc = Service("stubborn", ["sh", "-c", "trap '' TERM; sleep 30"], log_path=tmp_path / "s.log").start()
    time.sleep(0.2)  # let the trap be installed
    started = time.monotonic()
    assert svc.stop(timeout=0.5) == -signal.SIGKILL
    assert time.monotonic() - started < 3


def test_exit_while_starting_raises_with_the_log(tmp_path):
    svc = Redis(free_port(), tmp_path, log_path=tmp_path / "redis.log")
    svc.argv.append("--no-such-option")
    with pytest.raises(ServiceError, match="(?s)redis exited with 1.*no-such-option"):
        with svc:
            pass


def test_busy_port_is_refused(stack):
    with pytest.raises(ServiceError, match="already in use"):
        Redis(stack.redis.port, stack.base_dir / "other", log_path=stack.base_dir / "other.log").start()


def test_children_die_with_their_parent(tmp_path):
    port = free_port()
    script = textwrap.dedent(f"""
        import sys, time
        from infra.services import Redis
        Redis({port}, {str(tmp_path)!r}, log_path={str(tmp_path / 'r.log')!r}).start().wait_ready()
        print("ready", flush=True)
        time.sleep(60)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert parent.stdout.readline().strip() == "ready"
    assert port_open(port)
    parent.kill()  # SIGKILL: no cleanup code runs, only PR_SET_PDEATHSIG
    parent.wait()
    deadline = time.monotonic() + 5
    while port_open(port) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not port_open(port)


@pytest.mark.cassandra
def test_cassandra_keeps_its_data_across_a_restart(tmp_path):
    from cassandra import ProtocolVersion
    from cassandra.cluster import Cluster

    from infra.cassandra import Cassandra

    def session_of(node):
        cluster = Cluster([("127.0.0.1", node.port)], protocol_version=ProtocolVersion.V5)
        return cluster, cluster.connect()

    node = Cassandra(tmp_path / "cassandra")
    with node:
        cluster, session = session_of(node)
        session.execute("CREATE KEYSPACE k WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}")
        session.execute("CREATE TABLE k.t (id int PRIMARY KEY, body text)")
        for i in range(50):
            session.execute("INSERT INTO k.t (id, body) VALUES (%s, %s)", (i, f"row {i}"))
        cluster.shutdown()
    assert not node.running and not port_open(node.port) and not port_open(node.storage_port)
    assert (tmp_path / "cassandra" / "commitlog").is_dir() and (tmp_path / "cassandra" / "conf" / "cassandra.yaml").exists()

    again = Cassandra(tmp_path / "cassandra", port=node.port, storage_port=node.storage_port)
    with again:
        cluster, session = session_of(again)
        rows = {row.id: row.body for row in session.execute("SELECT id, body FROM k.t")}
        cluster.shutdown()
    assert rows == {i: f"row {i}" for i in range(50)}
    assert "Startup complete" in again.log_tail(400)


def test_make_run_adds_a_cassandra_node_for_the_cassandra_backend(tmp_path):
    from chat.settings import Settings
    from infra.run import build_apps, build_stack, parse_args

    args = parse_args(["--cassandra-port", "29142"])

    def planned(**environ):
        settings = Settings.from_env(environ)
        stack = build_stack(settings, environ, tmp_path, args)
        return stack, {app.name: app.env.get("CHAT_CASSANDRA_HOSTS") for app in build_apps(settings, stack, tmp_path, args)}

    stack, hosts = planned()
    assert stack.cassandra is None and hosts == {"worker": None, "gateway": None}
    stack, hosts = planned(CHAT_TIMELINE_BACKEND="cassandra")
    assert stack.cassandra in stack.services and stack.cassandra.base_dir == tmp_path.resolve() / "cassandra"
    assert hosts == {"worker": "127.0.0.1:29142", "gateway": "127.0.0.1:29142"}
    stack, hosts = planned(CHAT_TIMELINE_BACKEND="cassandra", CHAT_CASSANDRA_HOSTS="db1:9042")
    assert stack.cassandra is None and hosts == {"worker": None, "gateway": None}  # os.environ passes it on
