"""The real system on secured services, as on managed clusters: Kafka SASL_SSL with
SCRAM-SHA-512, Redis with an ACL user over TLS, Cassandra with a password over TLS, all with
certificates this test makes (``infra.security``). A stream worker and a gateway run with only
the CHAT_* security settings; a message goes end to end over HTTP and WebSocket; processes given
a wrong password are refused and say which service refused them and why.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import pytest

from infra.security import StackSecurity
from infra.stack import LocalStack
from tests.client import Client, uid
from tests.support import ROOT, System

pytestmark = pytest.mark.cassandra


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    base = tmp_path_factory.mktemp("secured")
    security = StackSecurity.make(base / "tls")
    with LocalStack(base / "stack", topics={}, cassandra=True, security=security) as stack:
        yield stack


@pytest.fixture(scope="module")
def system(secured, tmp_path_factory):
    system = System(secured, tmp_path_factory.mktemp("secured-system"), partitions=2,
                    CHAT_TIMELINE_BACKEND="cassandra", CHAT_CASSANDRA_HOSTS=secured.cassandra_hosts,
                    CHAT_CASSANDRA_KEYSPACE=f"secured_{uuid.uuid4().hex[:10]}", **secured.security.chat_env())
    try:
        yield system
    finally:
        system.stop()


def test_the_services_refuse_clients_without_credentials(secured):
    import redis
    from cassandra.cluster import Cluster, NoHostAvailable
    from confluent_kafka.admin import AdminClient

    with pytest.raises(redis.exceptions.ConnectionError):  # TLS only: a plaintext client is cut off
        redis.Redis(port=secured.redis.port, socket_timeout=2).ping()
    tls_only = redis.Redis(port=secured.redis.port, ssl=True, ssl_ca_certs=str(secured.security.certs.ca))
    with pytest.raises(redis.exceptions.AuthenticationError):  # the passwordless default user is off
        tls_only.ping()
    cluster = Cluster([("127.0.0.1", secured.cassandra.port)], protocol_version=5, connect_timeout=3,
                      ssl_context=secured.cassandra.cluster_options()["ssl_context"])
    with pytest.raises(NoHostAvailable, match="requires authentication"):
        cluster.connect()
    cluster.shutdown()
    plaintext = AdminClient({"bootstrap.servers": secured.bootstrap, "log_level": 0})
    with pytest.raises(Exception):
        plaintext.list_topics(timeout=3)


async def test_a_message_goes_end_to_end_on_secured_services(system, session):
    system.start_worker()
    system.start_gateway()
    alice = await Client.sign_in(session, system.url(), uid("alice"))
    bob = await Client.sign_in(session, system.url(), uid("bob"))
    a1, b1 = await alice.device("phone"), await bob.device("phone")
    group = await alice.create_group("secured", [bob.user_id])
    cid = group["conversation_id"]
    await a1.send_message(cid, "m1", "over TLS and SCRAM")
    (ack,) = await a1.wait_for("ack", lambda f: f["client_msg_id"] == "m1", timeout=30)
    assert ack["seq"] == 1
    (frame,) = await b1.wait_for("message", lambda f: f["message"]["conversation_id"] == cid, timeout=30)
    assert frame["message"]["body"] == "over TLS and SCRAM"
    status, page = await bob.call("GET", f"/v1/conversations/{cid}/messages")  # the Cassandra timeline
    assert status == 200 and [m["body"] for m in page["messages"]] == ["over TLS and SCRAM"]
    await a1.close()
    await b1.close()


def _exits(service, within_s: float = 60.0) -> str:
    """Wait for ``service`` to exit; its log, which must show a failed start."""
    deadline = time.monotonic() + within_s
    while service.running and time.monotonic() < deadline:
        time.sleep(0.2)
    log = service.log_tail(200)
    assert not service.running, f"{service.name} still runs:\n{log}"
    assert service.returncode != 0, log
    return log


@pytest.mark.parametrize("variable, says", [
    ("CHAT_KAFKA_SASL_PASSWORD", "SASL authentication error: Authentication failed"),
    ("CHAT_REDIS_PASSWORD", "invalid username-password pair"),
    ("CHAT_CASSANDRA_PASSWORD", "Provided username chat and/or password are incorrect"),
])
def test_a_wrong_password_stops_the_gateway_with_the_reason(system, variable, says):
    log = _exits(system.start_gateway(wait=False, **{variable: "not-the-password"}))
    assert says in log, log


def test_a_wrong_kafka_password_stops_the_worker_with_the_reason(system):
    log = _exits(system.start_worker(CHAT_KAFKA_SASL_PASSWORD="not-the-password", CHAT_WORKER_ID="refused"))
    assert "SaslAuthenticationFailed" in log and "SCRAM-SHA-512" in log, log


@pytest.mark.parametrize("password_ok", [True, False])
def test_the_chat_command_line_reads_the_secured_log(system, password_ok):
    env = {**os.environ, **system.env}
    if not password_ok:
        env["CHAT_KAFKA_SASL_PASSWORD"] = "not-the-password"
    done = subprocess.run([sys.executable, "-m", "chat.cli", "topics"], env=env, capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    if password_ok:
        assert done.returncode == 0 and system.settings.commands_topic in done.stdout, done.stderr
    else:
        assert done.returncode != 0 and "refused this client" in done.stderr and "SASL" in done.stderr, done.stderr
