"""Client options for a secured Kafka, Cassandra and Redis, built from ``Settings``.

Every connection the processes make takes its security options from here, so a managed
cluster (SASL/SCRAM and TLS on Kafka, a password and TLS on Cassandra, an ACL user and TLS on
Redis) needs only the ``CHAT_*`` settings documented in ``chat/settings.py``. The rule: with
the defaults every function returns nothing to add, so a local plaintext stack runs as before.
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import urlsplit

from chat.settings import Settings


def kafka_security(settings: Settings) -> dict[str, str]:
    """librdkafka properties (confluent-kafka producers, consumers, admin clients) of
    ``CHAT_KAFKA_SECURITY_PROTOCOL`` and its SASL and TLS settings; empty for PLAINTEXT."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return {}
    config = {"security.protocol": protocol.lower()}
    if protocol.startswith("SASL_"):
        config.update({"sasl.mechanism": settings.kafka_sasl_mechanism,
                       "sasl.username": settings.kafka_sasl_username,
                       "sasl.password": settings.kafka_sasl_password})
    if protocol.endswith("SSL"):
        if settings.kafka_ssl_ca_file:
            config["ssl.ca.location"] = settings.kafka_ssl_ca_file
        if settings.kafka_ssl_cert_file:
            config["ssl.certificate.location"] = settings.kafka_ssl_cert_file
            config["ssl.key.location"] = settings.kafka_ssl_key_file
        if settings.kafka_ssl_key_password:
            config["ssl.key.password"] = settings.kafka_ssl_key_password
    return config


def tls_context(ca_file: str, cert_file: str = "", key_file: str = "", key_password: str = "",
                check_hostname: bool = True) -> ssl.SSLContext:
    """A client TLS context that verifies the server with ``ca_file`` (empty: the system's
    CAs) and, unless told otherwise, its host name; with a client certificate when given."""
    context = ssl.create_default_context(cafile=ca_file or None)
    context.check_hostname = check_hostname
    if cert_file:
        context.load_cert_chain(cert_file, key_file or None, key_password or None)
    return context


def faust_credentials(settings: Settings) -> Any:
    """The Faust App's ``broker_credentials`` (aiokafka underneath), or None for PLAINTEXT."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    import faust

    context = None
    if protocol.endswith("SSL"):
        context = tls_context(settings.kafka_ssl_ca_file, settings.kafka_ssl_cert_file,
                              settings.kafka_ssl_key_file, settings.kafka_ssl_key_password)
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    # SASLCredentials says SASL_SSL when it has a context, SASL_PLAINTEXT when not.
    return faust.SASLCredentials(username=settings.kafka_sasl_username, password=settings.kafka_sasl_password,
                                 ssl_context=context, mechanism=settings.kafka_sasl_mechanism)


def cassandra_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for the driver's ``Cluster``: ``auth_provider`` with a user and
    password, ``ssl_context`` when ``CHAT_CASSANDRA_SSL``; empty by default."""
    options: dict[str, Any] = {}
    if settings.cassandra_username:
        from cassandra.auth import PlainTextAuthProvider

        options["auth_provider"] = PlainTextAuthProvider(username=settings.cassandra_username,
                                                         password=settings.cassandra_password)
    if settings.cassandra_ssl:
        options["ssl_context"] = tls_context(settings.cassandra_ssl_ca_file, settings.cassandra_ssl_cert_file,
                                             settings.cassandra_ssl_key_file,
                                             check_hostname=settings.cassandra_ssl_check_hostname)
    return options


def redis_options(settings: Settings, url: str | None = None) -> dict[str, Any]:
    """Keyword arguments for redis-py's ``from_url`` of ``url`` (default ``CHAT_REDIS_URL``):
    the ACL user and password (a user or password in the URL wins), and for a ``rediss://``
    URL the CA file and client certificate. Empty by default."""
    options: dict[str, Any] = {}
    if settings.redis_username:
        options["username"] = settings.redis_username
    if settings.redis_password:
        options["password"] = settings.redis_password
    if urlsplit(url or settings.redis_url).scheme == "rediss":
        if settings.redis_ssl_ca_file:
            options["ssl_ca_certs"] = settings.redis_ssl_ca_file
        if settings.redis_ssl_cert_file:
            options["ssl_certfile"] = settings.redis_ssl_cert_file
            options["ssl_keyfile"] = settings.redis_ssl_key_file
    return options


class KafkaRefusal:
    """A librdkafka ``error_cb`` that keeps why the broker refused this client (bad SASL
    credentials, a TLS handshake that failed), so that a client that cannot get metadata can
    say that instead of librdkafka's "broker transport failure" after its whole timeout."""

    def __init__(self) -> None:
        self.reason: str | None = None

    def __call__(self, error: Any) -> None:
        from confluent_kafka import KafkaError

        if error.code() in (KafkaError._AUTHENTICATION, KafkaError._SSL, KafkaError.SASL_AUTHENTICATION_FAILED):
            self.reason = error.str()

    def explain(self, bootstrap: str, what: str) -> str:
        if self.reason:
            return (f"the broker at {bootstrap} refused this client ({self.reason}): check "
                    "CHAT_KAFKA_SECURITY_PROTOCOL, CHAT_KAFKA_SASL_* and CHAT_KAFKA_SSL_*")
        return what
