"""``make cluster --secured``'s configuration, without starting anything: every node of the
three kinds secured, the passwords kept across restarts, the workers' and gateways' settings,
and the client settings file."""

from __future__ import annotations

import os
import stat

from chat.settings import Settings
from infra.cluster import client_env_file, make
from infra.security import StackSecurity


def test_the_secured_option_secures_every_node_and_every_process(tmp_path):
    cluster = make(["--secured"], {"CHAT_DATA_DIR": str(tmp_path)})
    stack, security = cluster.stack, cluster.security
    assert security is not None and stack.security is security
    for node in stack.kafkas:
        props = node.server_properties()
        assert props["listener.security.protocol.map"] == "SASL_SSL:SASL_SSL,CONTROLLER:SASL_SSL"
        assert props["inter.broker.listener.name"] == "SASL_SSL"
        assert props["sasl.mechanism.inter.broker.protocol"] == "SCRAM-SHA-512"
        assert props["sasl.mechanism.controller.protocol"] == "PLAIN"
        assert f'user_broker="{security.kafka_broker_password}"' in props[
            "listener.name.controller.plain.sasl.jaas.config"]
    for node in stack.redis.nodes:
        argv = " ".join(node.argv)
        assert "--port 0 --tls-port" in argv and "--tls-cluster yes --tls-replication yes" in argv
        assert f"--masteruser chat --masterauth {security.redis_password}" in argv
        assert "--user default off" in argv
    assert stack.redis_url.startswith("rediss://")
    assert stack.cassandra.config()["authenticator"] == "PasswordAuthenticator"
    assert stack.cassandra.config()["client_encryption_options"]["enabled"] is True
    for process in (*cluster.workers, *cluster.gateways):
        settings = Settings.from_env(process.env)
        assert settings.kafka_security_protocol == "SASL_SSL" and settings.kafka_sasl_password
        assert settings.redis_url.startswith("rediss://") and settings.redis_password == security.redis_password
        assert settings.cassandra_ssl and settings.cassandra_password == security.cassandra_password


def test_plain_mode_stays_plaintext_and_uses_its_own_data_directory(tmp_path):
    plain = make([], {"CHAT_DATA_DIR": str(tmp_path)})
    assert plain.security is None and plain.stack.redis_url.startswith("redis://")
    assert plain.stack.kafkas[0].server_properties()["listener.security.protocol.map"] == \
        "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    assert "CHAT_KAFKA_SECURITY_PROTOCOL" not in plain.workers[0].env


def test_the_passwords_are_kept_and_the_certificates_made_again(tmp_path):
    first = StackSecurity.kept(tmp_path / "tls")
    ca = first.certs.ca.read_bytes()
    second = StackSecurity.kept(tmp_path / "tls")
    assert (second.kafka_password, second.redis_password, second.cassandra_password) == \
        (first.kafka_password, first.redis_password, first.cassandra_password)
    assert second.certs.ca.read_bytes() != ca
    assert stat.S_IMODE(os.stat(tmp_path / "tls" / "passwords.json").st_mode) == 0o600


def test_the_client_settings_file_holds_what_a_client_needs(tmp_path):
    cluster = make(["--secured"], {"CHAT_DATA_DIR": str(tmp_path)})
    path = client_env_file(cluster)
    text = path.read_text()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert f"CHAT_KAFKA_BOOTSTRAP={cluster.stack.bootstrap}\n" in text
    assert "CHAT_KAFKA_SECURITY_PROTOCOL=SASL_SSL\n" in text
    assert f"CHAT_REDIS_URL={cluster.stack.redis_url}\n" in text and "CHAT_REDIS_CLUSTER=true\n" in text
    assert f"CHAT_CASSANDRA_PASSWORD={cluster.security.cassandra_password}\n" in text
