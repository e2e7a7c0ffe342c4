"""Security settings of Kafka, Cassandra and Redis, and the client options built from them."""

from __future__ import annotations

import ssl

import pytest

from chat.secure import cassandra_options, faust_credentials, kafka_security, redis_options, tls_context
from chat.settings import Settings, SettingsError
from infra.certs import make_certs

SCRAM = {"CHAT_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "CHAT_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
         "CHAT_KAFKA_SASL_USERNAME": "chat", "CHAT_KAFKA_SASL_PASSWORD": "s3cret",
         "CHAT_KAFKA_SSL_CA_FILE": "/etc/chat/ca.pem"}


def test_defaults_add_nothing():
    settings = Settings()
    assert kafka_security(settings) == {} and faust_credentials(settings) is None
    assert cassandra_options(settings) == {} and redis_options(settings) == {}


def test_kafka_sasl_ssl_with_scram():
    config = kafka_security(Settings.from_env(SCRAM))
    assert config == {"security.protocol": "sasl_ssl", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "chat",
                      "sasl.password": "s3cret", "ssl.ca.location": "/etc/chat/ca.pem"}


def test_kafka_mutual_tls_without_sasl():
    settings = Settings(kafka_security_protocol="SSL", kafka_ssl_cert_file="c.pem", kafka_ssl_key_file="k.pem")
    assert kafka_security(settings) == {"security.protocol": "ssl", "ssl.certificate.location": "c.pem",
                                        "ssl.key.location": "k.pem"}


def test_faust_gets_scram_over_tls(tmp_path):
    certs = make_certs(tmp_path)
    creds = faust_credentials(Settings.from_env({**SCRAM, "CHAT_KAFKA_SSL_CA_FILE": str(certs.ca)}))
    assert creds.protocol.value == "SASL_SSL" and creds.mechanism.value == "SCRAM-SHA-512"
    assert (creds.username, creds.password) == ("chat", "s3cret")
    assert creds.ssl_context.verify_mode == ssl.CERT_REQUIRED and creds.ssl_context.check_hostname
    plain = faust_credentials(Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="u",
                                       kafka_sasl_password="p"))
    assert plain.protocol.value == "SASL_PLAINTEXT" and plain.ssl_context is None


@pytest.mark.parametrize("env, says", [
    ({"CHAT_KAFKA_SECURITY_PROTOCOL": "TLS"}, "CHAT_KAFKA_SECURITY_PROTOCOL"),
    ({"CHAT_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "CHAT_KAFKA_SASL_MECHANISM": "GSSAPI",
      "CHAT_KAFKA_SASL_USERNAME": "u", "CHAT_KAFKA_SASL_PASSWORD": "p"}, "CHAT_KAFKA_SASL_MECHANISM"),
    ({"CHAT_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "CHAT_KAFKA_SASL_USERNAME"),
    ({"CHAT_REDIS_SSL_CERT_FILE": "c.pem"}, "CHAT_REDIS_SSL_KEY_FILE"),
    ({"CHAT_CASSANDRA_USERNAME": "chat"}, "CHAT_CASSANDRA_PASSWORD"),
])
def test_settings_that_cannot_connect_stop_start_up(env, says):
    with pytest.raises(SettingsError, match=says):
        Settings.from_env(env)


def test_cassandra_password_and_tls(tmp_path):
    certs = make_certs(tmp_path)
    options = cassandra_options(Settings.from_env({
        "CHAT_CASSANDRA_USERNAME": "chat", "CHAT_CASSANDRA_PASSWORD": "pw", "CHAT_CASSANDRA_SSL": "true",
        "CHAT_CASSANDRA_SSL_CA_FILE": str(certs.ca), "CHAT_CASSANDRA_SSL_CERT_FILE": str(certs.client_cert),
        "CHAT_CASSANDRA_SSL_KEY_FILE": str(certs.client_key)}))
    assert options["auth_provider"].username == "chat" and options["auth_provider"].password == "pw"
    assert options["ssl_context"].verify_mode == ssl.CERT_REQUIRED and options["ssl_context"].check_hostname


def test_redis_acl_and_tls_only_for_a_rediss_url():
    settings = Settings(redis_url="rediss://cache.example.net:6380/0", redis_username="chat", redis_password="pw",
                        redis_ssl_ca_file="/ca.pem")
    assert redis_options(settings) == {"username": "chat", "password": "pw", "ssl_ca_certs": "/ca.pem"}
    # A plain redis:// connection takes no ssl_* arguments (redis-py would refuse them).
    assert redis_options(settings, "redis://127.0.0.1:6379/0") == {"username": "chat", "password": "pw"}


def test_tls_context_checks_the_server_unless_told(tmp_path):
    certs = make_certs(tmp_path)
    assert tls_context(str(certs.ca)).check_hostname
    assert not tls_context(str(certs.ca), check_hostname=False).check_hostname
    tls_context(str(certs.ca), str(certs.client_cert), str(certs.client_key))  # the pair loads
