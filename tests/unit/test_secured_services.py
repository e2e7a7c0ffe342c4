"""The secured options of the local service starters (infra.security), without starting them."""

from __future__ import annotations

from infra.cassandra import Cassandra, _yaml
from infra.kafka import Kafka
from infra.security import StackSecurity
from infra.services import Redis


def test_kafka_listens_sasl_ssl_and_formats_the_scram_users(tmp_path):
    security = StackSecurity.make(tmp_path / "tls")
    node = Kafka(9, tmp_path, controller_port=10, log_path=tmp_path / "k.log", security=security.kafka())
    props = node.server_properties()
    assert props["listeners"] == "SASL_SSL://127.0.0.1:9,CONTROLLER://127.0.0.1:10"
    assert props["inter.broker.listener.name"] == "SASL_SSL"
    assert props["sasl.enabled.mechanisms"] == props["sasl.mechanism.inter.broker.protocol"] == "SCRAM-SHA-512"
    assert 'username="broker"' in props["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"]
    assert security.kafka().format_args() == [
        "--add-scram", f"SCRAM-SHA-512=[name=broker,password={security.kafka_broker_password}]",
        "--add-scram", f"SCRAM-SHA-512=[name=chat,password={security.kafka_password}]"]
    assert node.client_config["security.protocol"] == "sasl_ssl"
    assert Kafka(9, tmp_path, controller_port=10, log_path=tmp_path / "k.log").client_config == {}


def test_redis_acl_user_and_tls_only(tmp_path):
    security = StackSecurity.make(tmp_path / "tls")
    redis = Redis(7, tmp_path, log_path=tmp_path / "r.log", users=security.redis_users, tls=security.certs)
    argv = " ".join(redis.argv)
    assert "--port 0 --tls-port 7" in argv and f"--user chat on >{security.redis_password} ~* &* +@all" in argv
    assert "--user default off" in argv and redis.url == "rediss://127.0.0.1:7/0"


def test_cassandra_password_authenticator_and_client_tls(tmp_path):
    security = StackSecurity.make(tmp_path / "tls")
    node = Cassandra(tmp_path / "c", port=1, storage_port=2, password_auth=True, tls=security.certs)
    config = node.config()
    assert config["authenticator"] == "PasswordAuthenticator"
    assert config["client_encryption_options"]["store_type"] == "PKCS12"
    assert _yaml({"enabled": True, "keystore": "/k.p12"}) == '{enabled: true, keystore: "/k.p12"}'
    assert "authenticator" not in Cassandra(tmp_path / "d", port=1, storage_port=2).config()
