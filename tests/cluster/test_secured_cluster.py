"""``make cluster``'s deployment in secured mode (``python -m infra.cluster --secured``), with
certificates and passwords this test makes: three Kafka brokers that take only SASL_SSL with
SCRAM-SHA-512 (between themselves too; PLAIN over TLS between the controllers), a Redis Cluster
of six nodes with an ACL user and TLS on clients, bus and replication, Cassandra with a password
role over TLS. Workers and gateways get only the CHAT_* security settings. A message goes end
to end through HAProxy; the links between nodes work secured (replicas in sync); every service
refuses a client without the credentials, or with wrong ones, and a gateway given a wrong Redis
password (the Redis Cluster client's path) stops and says why.
"""

from __future__ import annotations

import socket
import ssl
import time

import pytest

from infra.cluster import Cluster
from infra.run import Gateway
from infra.services import free_port
from tests.client import Client, uid

WRONG = "not-the-password"


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    from infra.cluster_stack import ClusterPorts
    from infra.security import StackSecurity

    base = tmp_path_factory.mktemp("secured-cluster")
    deployment = Cluster(base / "cluster", ClusterPorts.free(), security=StackSecurity.make(base / "tls"))
    deployment.start()
    try:
        yield deployment
    finally:
        deployment.stop()


async def test_a_message_goes_end_to_end_through_the_proxy(secured, session):
    alice = await Client.sign_in(session, secured.url, uid("alice"))
    bob = await Client.sign_in(session, secured.url, uid("bob"))
    a1 = await alice.device("phone")
    # bob on each gateway directly too: the delivery crosses gateways whichever one alice is on.
    bobs = [await bob.device(f"gw{n}", f"http://127.0.0.1:{port}") for n, port in enumerate(secured.ports.gateways)]
    group = await alice.create_group("secured cluster", [bob.user_id])
    cid = group["conversation_id"]
    await a1.send_message(cid, "m1", "through SASL_SSL, Redis TLS and Cassandra TLS")
    (ack,) = await a1.wait_for("ack", lambda f: f["client_msg_id"] == "m1", timeout=60)
    assert ack["seq"] == 1
    for device in bobs:
        (frame,) = await device.wait_for("message", lambda f: f["message"]["conversation_id"] == cid, timeout=60)
        assert frame["message"]["body"] == "through SASL_SSL, Redis TLS and Cassandra TLS"
    status, page = await bob.call("GET", f"/v1/conversations/{cid}/messages")  # the Cassandra timeline
    assert status == 200 and [(m["seq"], m["body"]) for m in page["messages"]] == [
        (1, "through SASL_SSL, Redis TLS and Cassandra TLS")]
    for device in (a1, *bobs):
        await device.close()


def test_the_nodes_replicate_over_the_secured_links(secured):
    """Kafka's followers are in sync (inter-broker SASL_SSL), the quorum answers (controllers
    over SASL_SSL), each Redis master has its replica online (TLS replication, masterauth)."""
    from confluent_kafka.admin import AdminClient

    stack = secured.stack
    admin = AdminClient({"bootstrap.servers": stack.bootstrap, "log_level": 0, **stack.client_config})
    meta = admin.list_topics(secured.settings.events_topic, timeout=10)
    assert sorted(meta.brokers) == [1, 2, 3]
    for partition in meta.topics[secured.settings.events_topic].partitions.values():
        assert sorted(partition.isrs) == [1, 2, 3], partition
    tls = ssl.create_default_context(cafile=str(stack.security.certs.ca))
    for node in stack.kafkas:  # the controller listener speaks TLS, with a certificate the CA signed
        raw = socket.create_connection(("127.0.0.1", node.controller_port), timeout=5)
        with tls.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            assert s.version()
    masters = stack.redis.masters()
    assert len(masters) == 3
    for node in masters:
        info = node.command("INFO", "replication")
        assert "connected_slaves:1" in info and "state=online" in info, info
    assert "cluster_known_nodes:6" in stack.redis.nodes[0].command("CLUSTER", "INFO")


def test_kafka_refuses_plaintext_and_wrong_passwords(secured):
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    stack = secured.stack
    for node in stack.kafkas:
        plaintext = AdminClient({"bootstrap.servers": node.bootstrap, "log_level": 0})
        with pytest.raises(KafkaException):
            plaintext.list_topics(timeout=2)
        errors: list[str] = []
        wrong = AdminClient({"bootstrap.servers": node.bootstrap, "log_level": 0,
                             **{**stack.client_config, "sasl.username": "chat", "sasl.password": WRONG},
                             "error_cb": lambda e: errors.append(e.str())})
        with pytest.raises(KafkaException):
            wrong.list_topics(timeout=3)
        wrong.poll(0)  # serves error_cb, which list_topics does not
        assert any("Authentication failed" in e for e in errors), errors


def test_every_redis_node_refuses_plaintext_no_user_and_wrong_passwords(secured):
    import redis

    tls = {"ssl": True, "ssl_ca_certs": str(secured.stack.security.certs.ca)}
    for node in secured.stack.redis.nodes:
        def ping(**options) -> None:  # once: redis-py retries refused connections by default
            redis.Redis(port=node.port, socket_timeout=2, retry=None, **options).ping()

        with pytest.raises(redis.exceptions.ConnectionError):  # TLS only: a plaintext client is cut off
            ping()
        with pytest.raises(redis.exceptions.AuthenticationError, match="authenticated"):  # default user off
            ping(**tls)
        with pytest.raises(redis.exceptions.AuthenticationError, match="invalid username-password pair"):
            ping(**tls, username="chat", password=WRONG)
        ping(**tls, username="chat", password=secured.stack.security.redis_password)  # and the right one works


def test_cassandra_refuses_plaintext_no_password_and_wrong_passwords(secured):
    from cassandra.auth import PlainTextAuthProvider
    from cassandra.cluster import Cluster as CassandraCluster, NoHostAvailable

    node = secured.stack.cassandra
    tls = node.cluster_options()["ssl_context"]
    attempts = [({}, None), ({"ssl_context": tls}, "requires authentication"),
                ({"ssl_context": tls, "auth_provider": PlainTextAuthProvider("chat", WRONG)}, "are incorrect")]
    for options, says in attempts:
        client = CassandraCluster([("127.0.0.1", node.port)], protocol_version=5, connect_timeout=3, **options)
        try:
            with pytest.raises(NoHostAvailable) as refused:
                client.connect()
            assert says is None or says in str(refused.value), refused.value
        finally:
            client.shutdown()


def test_a_gateway_with_a_wrong_redis_password_stops_with_the_reason(secured):
    port = free_port()
    env = {**secured.env, "CHAT_PORT": str(port), "CHAT_GATEWAY_ID": "refused", "CHAT_REDIS_PASSWORD": WRONG}
    gateway = Gateway("refused-gateway", secured.gateways[0].argv, env=env, cwd=secured.gateways[0].cwd,
                      log_path=secured.base_dir / "logs" / "refused-gateway.log")
    gateway.port = port
    gateway.start()
    try:
        deadline = time.monotonic() + 90
        while gateway.running and time.monotonic() < deadline:
            time.sleep(0.2)
        log = gateway.log_tail(200)
        assert not gateway.running and gateway.returncode != 0, log
        assert "invalid username-password pair" in log, log
    finally:
        gateway.stop()
