"""Secured mode of the local services, as a managed cluster would be secured.

    security = StackSecurity.make(base_dir / "tls")
    with LocalStack(base_dir, cassandra=True, security=security) as stack:
        env = security.chat_env()   # the CHAT_* variables of a process that connects to them

Kafka: SASL_SSL with SCRAM-SHA-512 on its listener (and between brokers); Redis: an ACL user,
the passwordless default user off, TLS only; Cassandra: PasswordAuthenticator, TLS only, and a
login role for the application. One throwaway CA (``infra.certs``) signs every server
certificate; passwords are random per stack. The same object configures any number of Kafka
nodes or Redis servers, so a multi-node stack secures itself the same way.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from infra.certs import Certs, make_certs
from infra.kafka import KafkaSecurity

MECHANISM = "SCRAM-SHA-512"


@dataclass(frozen=True)
class StackSecurity:
    certs: Certs
    kafka_broker_password: str
    kafka_password: str
    redis_password: str
    cassandra_password: str
    user: str = "chat"  # the application's user on all three

    @classmethod
    def make(cls, directory: str | Path) -> "StackSecurity":
        """New certificates under ``directory`` and new random passwords."""
        return cls(make_certs(directory), *(secrets.token_urlsafe(18) for _ in range(4)))

    @classmethod
    def kept(cls, directory: str | Path) -> "StackSecurity":
        """New certificates under ``directory``, and the passwords kept in its
        ``passwords.json`` (made on the first call): Kafka's SCRAM users and Cassandra's role
        are stored with the data on the first start, so a restart must sign in with the same."""
        path = Path(directory) / "passwords.json"
        certs = make_certs(directory)
        if not path.exists():
            path.write_text(json.dumps([secrets.token_urlsafe(18) for _ in range(4)]))
            os.chmod(path, 0o600)
        return cls(certs, *json.loads(path.read_text()))

    def kafka(self, *, controller: bool = False) -> KafkaSecurity:
        """The brokers' options: their own user first, then the application's; ``controller``
        secures the controller listener too (a quorum of several nodes)."""
        return KafkaSecurity(self.certs.server_p12, self.certs.password, self.certs.ca,
                             {"broker": self.kafka_broker_password, self.user: self.kafka_password}, MECHANISM,
                             controller=controller)

    @property
    def redis_users(self) -> dict[str, str]:
        return {self.user: self.redis_password}

    def chat_env(self) -> dict[str, str]:
        """The CHAT_* settings (chat/settings.py) of a process that connects to the stack."""
        ca = str(self.certs.ca)
        return {
            "CHAT_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "CHAT_KAFKA_SASL_MECHANISM": MECHANISM,
            "CHAT_KAFKA_SASL_USERNAME": self.user, "CHAT_KAFKA_SASL_PASSWORD": self.kafka_password,
            "CHAT_KAFKA_SSL_CA_FILE": ca,
            "CHAT_REDIS_USERNAME": self.user, "CHAT_REDIS_PASSWORD": self.redis_password,
            "CHAT_REDIS_SSL_CA_FILE": ca,
            "CHAT_CASSANDRA_USERNAME": self.user, "CHAT_CASSANDRA_PASSWORD": self.cassandra_password,
            "CHAT_CASSANDRA_SSL": "true", "CHAT_CASSANDRA_SSL_CA_FILE": ca,
        }
