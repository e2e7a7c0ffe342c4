"""One frozen ``Settings``, read from ``CHAT_*`` environment variables once at start-up.

This is the only module that reads the environment. Defaults run on one machine.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

DAY_MS = 86_400_000
KAFKA_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
# Public, so only for a gateway bound to loopback (see ``auth_problem``).
DEV_JWT_SECRET = "dev-only-secret-change-me-in-production"


class SettingsError(ValueError):
    """Settings a process must not start with; the message names the variables to set."""


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def is_loopback(host: str) -> bool:
    """Whether a bind address reaches this machine only: 127.0.0.0/8, ::1 or localhost.
    Anything else, the empty string (every interface) and other host names included, is not."""
    name = host.strip().lower().removeprefix("[").removesuffix("]")
    if name in {"localhost", "localhost."}:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def is_trusted_url(url: str) -> bool:
    """Whether keys may be fetched from ``url``: https, or http to a loopback address only."""
    parts = urlsplit(url)
    if not parts.hostname:
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and is_loopback(parts.hostname))


@dataclass(frozen=True)
class Settings:
    # HTTP / WebSocket
    host: str = "127.0.0.1"
    port: int = 8080
    gateway_id: str = field(default_factory=lambda: f"{socket.gethostname()}-8080")
    # SO_REUSEPORT on the gateway's socket: several gateway processes (each its own
    # CHAT_GATEWAY_ID) listen on one port and the kernel spreads connections over them.
    reuse_port: bool = False
    gateways: int = 1  # gateway processes `make run` starts on CHAT_PORT (more than 1: reuse_port)
    # Apache Kafka. The defaults of the addresses are the ports `make run` starts its services
    # on, so that the `chat` command line finds that stack with no settings.
    kafka_bootstrap: str = "127.0.0.1:19092"
    topic_prefix: str = "chat."
    partitions: int = 4
    # Every topic is created with these (infra.topics): 3 and 2 on a cluster of three brokers.
    replication_factor: int = 1
    min_insync_replicas: int = 1
    # A worker that stops heartbeating loses its partitions after this long (Kafka's range for
    # it is the broker's group.min/max.session.timeout.ms: 6 s to 30 min by default).
    kafka_session_timeout_s: float = 10.0
    # Longest a fetch waits when there is nothing to read; records end the wait as they arrive.
    fetch_max_wait_ms: int = 500
    # How long the gateways' and workers' producers gather records into one produce request
    # (librdkafka's linger.ms). 1 keeps light loads fastest; 5 took 1,000 msg/s offered from
    # about 820 to 930 accepted on this machine, but doubled p50 at 100 msg/s (bench/RESULTS.md).
    kafka_linger_ms: float = 1.0
    batch_window_ms: float = 5.0  # the agents' batch: at most this long to gather (or 500 events)
    # A secured Kafka (managed clusters; chat/secure.py builds every client's options from these):
    # PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL; SASL mechanism PLAIN, SCRAM-SHA-256 or
    # SCRAM-SHA-512 with its user and password. TLS verifies the brokers with the CA file (empty:
    # the system's CAs) and their host names; the client certificate and key (PEM) are for
    # brokers that require one (mutual TLS).
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "PLAIN"
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = ""
    kafka_ssl_ca_file: str = ""
    kafka_ssl_cert_file: str = ""
    kafka_ssl_key_file: str = ""
    kafka_ssl_key_password: str = ""
    # Redis
    redis_url: str = "redis://127.0.0.1:16379/0"
    # A Redis Cluster: redis_url names any one of its nodes (database 0), the client finds the
    # rest and follows failovers and slot moves (chat.redis_pool). False: one Redis server.
    redis_cluster: bool = False
    # Connections per process; a request waits up to redis_wait_s for a free one (then 503).
    redis_max_connections: int = 64
    redis_wait_s: float = 5.0
    # A secured Redis: an ACL user and its password (or in the URL: redis://user:pass@host); TLS
    # with a rediss:// URL, verifying the server with the CA file (empty: the system's CAs) and
    # its host name; a client certificate and key (PEM) for a server that requires one.
    redis_username: str = ""
    redis_password: str = ""
    redis_ssl_ca_file: str = ""
    redis_ssl_cert_file: str = ""
    redis_ssl_key_file: str = ""
    # Timeline store: "sqlite" (embedded, one machine) or "cassandra"
    timeline_backend: str = "sqlite"
    data_dir: str = ".data"
    sqlite_path: str = ""
    cassandra_hosts: str = ""
    cassandra_keyspace: str = "chat"
    # A secured Cassandra: a role's user and password (PasswordAuthenticator); TLS when
    # cassandra_ssl, verifying the nodes with the CA file (empty: the system's CAs) and, when
    # cassandra_ssl_check_hostname, their host names; client certificate and key (PEM) optional.
    cassandra_username: str = ""
    cassandra_password: str = ""
    cassandra_ssl: bool = False
    cassandra_ssl_ca_file: str = ""
    cassandra_ssl_cert_file: str = ""
    cassandra_ssl_key_file: str = ""
    cassandra_ssl_check_hostname: bool = True
    # Replicas of the Cassandra keyspaces when this process creates them; 0: replication_factor
    # (`make cluster` runs Kafka with 3 but one Cassandra node, so it sets 1 here).
    cassandra_replication_factor: int = 0
    retention_days: float = 90.0
    sweep_interval_s: float = 300.0
    # Auth. Development sign-in (POST /v1/dev/token): None (CHAT_DEV_AUTH unset or empty) means
    # on only when the gateway is bound to loopback; see ``dev_sign_in`` and ``auth_problem``.
    jwt_secret: str = DEV_JWT_SECRET
    jwt_algorithm: str = "HS256"
    dev_auth: bool | None = None
    token_ttl_s: int = 86_400
    # An identity provider's tokens (issue 13, item 9): RS256/ES256 JWTs verified with the keys
    # its JWKS publishes, found by OIDC discovery from CHAT_OIDC_ISSUER or at CHAT_JWKS_URL.
    # Both need CHAT_JWT_AUDIENCE (comma-separated; one must be in the token's ``aud``); the
    # token's ``iss`` must be CHAT_JWT_ISSUER (default: CHAT_OIDC_ISSUER). The user id is the
    # claim CHAT_JWT_USER_CLAIM. The key set is kept jwks_cache_s; a token naming a key id the
    # set lacks refetches it, at most once per jwks_refetch_s. See ``auth_problem``.
    oidc_issuer: str = ""
    jwks_url: str = ""
    jwt_issuer: str = ""
    jwt_audience: str = ""
    jwt_user_claim: str = "sub"
    jwks_algorithms: str = "RS256,ES256"
    jwks_cache_s: float = 300.0
    jwks_refetch_s: float = 30.0
    jwks_timeout_s: float = 5.0
    jwt_leeway_s: float = 30.0  # clock skew allowed on the provider's exp, nbf and iat
    # The web client's session cookie (HttpOnly, SameSite=Strict): cookie-authenticated requests
    # must come from one of these origins (comma-separated, e.g. https://chat.example.com);
    # empty: an origin whose host is the request's Host. Secure: None means when the sign-in came
    # over https (the request's scheme or its Origin), true/false to force it.
    web_origins: str = ""
    cookie_secure: bool | None = None
    # Limits
    max_body_bytes: int = 65_536
    max_frame_bytes: int = 1_048_576
    max_members_per_request: int = 1_000
    max_page: int = 200
    default_page: int = 50
    dedup_window_s: float = 86_400.0
    # Protocol 1.1: the sender may edit a message this long after sending it; a user may react
    # to one message with at most this many distinct emoji; a send names at most this many mentions.
    edit_window_s: float = 172_800.0
    max_reactions_per_user: int = 20
    max_mentions: int = 100
    rate_burst: int = 200  # messages a user may send at once (all gateways together) ...
    rate_per_s: float = 50.0  # ... and per second sustained
    max_connections_per_user: int = 20  # connected devices, across all gateways
    # Conversations (groups, and direct ones that did not exist) a user may create per hour, all
    # gateways together: a token bucket of this many, refilled evenly over the hour. A retry
    # with the same idempotency key is not counted again.
    conversations_per_hour: int = 100
    # Bytes a gateway holds for one socket (frames queued, held back, in the transport buffer);
    # past it the socket is closed with 1013 and the device reconnects and syncs (gateway/outbound.py).
    # At least a few of the largest frames (a 64 KiB body is a ~70 KiB frame, more when escaped).
    max_queued_bytes: int = 4_194_304
    # Connections and liveness
    connection_ttl_s: float = 60.0
    # A new connection holds live messages back until its first sync, at most this long.
    sync_grace_s: float = 1.0
    heartbeat_interval_s: float = 15.0
    # Presence: a user with no live device and no heartbeat for presence_ttl seconds is offline
    # (CHAT_PRESENCE_TTL); a user whose last device left goes offline only after the debounce,
    # so a quick reconnect changes nothing.
    presence_ttl: float = 60.0
    presence_debounce_s: float = 5.0
    max_presence_users: int = 500  # user ids per GET /v1/presence
    # Typing: an indicator expires this long after its last refresh; a per-user token bucket.
    typing_ttl_s: float = 10.0
    typing_rate_burst: int = 20
    typing_rate_per_s: float = 5.0
    request_timeout_s: float = 15.0
    # /healthz probes the pipeline (gateway/pipeline.py): a probe per commands partition this
    # often, and a partition unanswered for probe_stale_s fails the check.
    probe_interval_s: float = 2.0
    probe_stale_s: float = 10.0
    # Media (issue 5): uploads streamed to a MediaStore ("fs": files under media_dir, default
    # <data_dir>/media; "s3": any S3-compatible service), at most media_max_bytes, content types
    # on an allow-list (``type/*`` allows a whole family).
    media_backend: str = "fs"
    media_dir: str = ""
    media_max_bytes: int = 26_214_400
    media_types: str = ("image/jpeg,image/png,image/gif,image/webp,image/heic,image/avif,video/*,audio/*,"
                        "application/pdf,text/plain,application/octet-stream")
    media_s3_endpoint: str = ""  # empty: AWS itself
    media_s3_bucket: str = "chat-media"
    media_s3_region: str = "us-east-1"
    media_s3_access_key: str = ""
    media_s3_secret_key: str = ""
    media_part_bytes: int = 8_388_608  # S3 multipart part size: the most an upload holds in memory
    thumbnail_px: int = 320
    # Upload limits per user, counted across gateways in a window of upload_window_s that starts
    # at the window's first upload (gateway/upload_limits.py); over either: 429 with Retry-After.
    max_uploads_per_hour: int = 100
    max_upload_bytes_per_hour: int = 1_073_741_824
    upload_window_s: float = 3600.0
    # Media expiry (projections/media.py): a medium never sent in a message is deleted this long
    # after its upload; a sent one when the last message carrying it is past retention_days.
    # The stream workers sweep expired media every media_sweep_interval_s.
    media_unsent_ttl_s: float = 86_400.0
    media_sweep_interval_s: float = 60.0
    # Push notifications to devices with no live connection (issue 5)
    push_max_attempts: int = 5
    push_backoff_s: float = 1.0  # the first retry's delay, doubled on each further attempt
    push_backoff_max_s: float = 300.0
    push_timeout_s: float = 10.0
    push_private_default: bool = True  # no message content in pushes unless a conversation opts out
    push_dedup_ttl_s: float = 604_800.0
    fcm_endpoint: str = "https://fcm.googleapis.com"
    fcm_credentials_file: str = ""  # a Google service-account JSON (project_id, client_email, private_key, token_uri)
    apns_endpoint: str = "https://api.push.apple.com"
    apns_key_file: str = ""  # the .p8 signing key (ES256)
    apns_key_id: str = ""
    apns_team_id: str = ""
    apns_topic: str = ""  # the app's bundle id
    webpush_vapid_key_file: str = ""  # PEM of the VAPID private key (P-256)
    webpush_vapid_subject: str = "mailto:admin@localhost"
    # Requests to URLs a client chose (webhook push tokens, Web Push endpoints; push/egress.py):
    # https only unless push_allow_http, and only to public addresses unless inside
    # push_allow_cidrs (comma-separated CIDRs, e.g. "10.20.0.0/16,fd00:1::/64").
    push_allow_http: bool = False
    push_allow_cidrs: str = ""
    max_push_devices_per_user: int = 20  # push registrations; re-registering a device is free
    # Sequencer snapshots (streams/snapshots.py): every snapshot_interval_s a worker writes the
    # state of the conversations that changed to the compacted snapshots topic, so a worker
    # taking a partition over replays only the events after the last round. A conversation no
    # event or command reached for sequencer_idle_s (to twice that) is kept as its encoded
    # snapshot instead of objects, and thawed on its next use: what bounds a worker's memory.
    snapshot_interval_s: float = 5.0
    sequencer_idle_s: float = 300.0
    # Worker
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    app_id: str = "chat"
    log_level: str = "INFO"
    log_format: str = "json"  # "json" (one object per line) or "text"
    # Stream worker's Prometheus endpoint (GET /metrics); 0 = off
    worker_metrics_port: int = 0
    # Python's cyclic GC in the worker and gateway processes (chat/gc_tuning.py): a collection
    # of the youngest generation every this many new objects (Python's default 700; 0 keeps it).
    gc_threshold: int = 50_000
    # A worker's or gateway's event loop held this long by one callback is logged with the
    # stack holding it (chat/loop_watch.py; 0: not watched). Its lag is a metric either way.
    loop_stall_ms: float = 250.0

    def __post_init__(self) -> None:
        self.push_allow_networks  # noqa: B018  (a bad CHAT_PUSH_ALLOW_CIDRS stops start-up, not a push)
        problem = self.security_problem()
        if problem is not None:
            raise SettingsError(problem)

    def security_problem(self) -> str | None:
        """Why the Kafka, Redis and Cassandra security settings cannot make a connection, or None."""
        if self.kafka_security_protocol not in KAFKA_PROTOCOLS:
            return (f"CHAT_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol!r}: "
                    f"one of {', '.join(KAFKA_PROTOCOLS)}")
        if self.kafka_security_protocol.startswith("SASL_"):
            if self.kafka_sasl_mechanism not in SASL_MECHANISMS:
                return (f"CHAT_KAFKA_SASL_MECHANISM={self.kafka_sasl_mechanism!r}: "
                        f"one of {', '.join(SASL_MECHANISMS)}")
            if not (self.kafka_sasl_username and self.kafka_sasl_password):
                return (f"CHAT_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs "
                        "CHAT_KAFKA_SASL_USERNAME and CHAT_KAFKA_SASL_PASSWORD")
        for name, cert, key in (("KAFKA", self.kafka_ssl_cert_file, self.kafka_ssl_key_file),
                                ("REDIS", self.redis_ssl_cert_file, self.redis_ssl_key_file),
                                ("CASSANDRA", self.cassandra_ssl_cert_file, self.cassandra_ssl_key_file)):
            if bool(cert) != bool(key):
                return (f"CHAT_{name}_SSL_CERT_FILE and CHAT_{name}_SSL_KEY_FILE go together"
                        " (a client certificate and its key)")
        if bool(self.cassandra_username) != bool(self.cassandra_password):
            return "CHAT_CASSANDRA_USERNAME and CHAT_CASSANDRA_PASSWORD go together"
        return None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> "Settings":
        """Settings from ``CHAT_<FIELD>`` variables (upper case), then ``overrides``."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get(f"CHAT_{f.name.upper()}")
            if raw is None:
                continue
            kind = f.type if isinstance(f.type, str) else f.type.__name__
            if kind == "bool":
                values[f.name] = _bool(raw)
            elif kind == "bool | None":
                values[f.name] = _bool(raw) if raw.strip() else None
            elif kind == "int":
                values[f.name] = int(raw)
            elif kind == "float":
                values[f.name] = float(raw)
            else:
                values[f.name] = raw
        if "CHAT_GATEWAY_ID" not in env and "gateway_id" not in overrides:
            port = values.get("port", overrides.get("port", cls.port))
            values["gateway_id"] = f"{socket.gethostname()}-{port}"
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    # Derived values
    @property
    def cassandra_replicas(self) -> int:
        """Replicas of the Cassandra keyspaces: ``cassandra_replication_factor``, else
        ``replication_factor``."""
        return self.cassandra_replication_factor or self.replication_factor

    @property
    def dev_sign_in(self) -> bool:
        """Whether ``POST /v1/dev/token`` answers: as set, else only on a loopback bind."""
        return is_loopback(self.host) if self.dev_auth is None else self.dev_auth

    def auth_problem(self) -> str | None:
        """Why a gateway must not serve with these settings, or None.

        The built-in secret is public: anyone could sign a token for any user with it. So it
        is allowed only for development sign-in on a loopback bind. Anywhere else the gateway
        needs CHAT_JWT_SECRET or an identity provider's key set (CHAT_OIDC_ISSUER or
        CHAT_JWKS_URL), and development sign-in (anyone can be anyone) stays off there unless
        CHAT_DEV_AUTH=true says otherwise; it signs with CHAT_JWT_SECRET, so it needs that.
        """
        problem = self.jwks_problem()
        if problem is not None:
            return problem
        if self.jwt_secret and self.jwt_secret != DEV_JWT_SECRET:
            return None
        if self.jwks_configured and not self.dev_sign_in:
            return None  # the provider's keys are the only way in
        if not is_loopback(self.host):
            return (f"CHAT_HOST={self.host!r} is not a loopback address (127.0.0.0/8, ::1, localhost), "
                    "and the built-in development secret and development sign-in work only there: "
                    "set CHAT_JWT_SECRET to a secret of your own (development sign-in then stays off "
                    "unless CHAT_DEV_AUTH=true) or an identity provider's key set (CHAT_OIDC_ISSUER "
                    "or CHAT_JWKS_URL), or bind CHAT_HOST=127.0.0.1")
        if not self.dev_sign_in:
            return ("CHAT_JWT_SECRET must be set to a secret of your own when development sign-in "
                    "is off (CHAT_DEV_AUTH=false)")
        return None

    @property
    def jwks_configured(self) -> bool:
        """Whether an identity provider's tokens are verified with the keys it publishes."""
        return bool(self.oidc_issuer or self.jwks_url)

    def jwks_problem(self) -> str | None:
        """Why the identity provider settings cannot be served with, or None (also when unset)."""
        if not self.jwks_configured:
            return None
        if not self.jwt_audience_list:
            return ("CHAT_JWT_AUDIENCE must name this service (the token's aud): without it, a token "
                    "the identity provider issued to any other application would sign in here")
        if not self.expected_issuer:
            return "CHAT_JWT_ISSUER must be set with CHAT_JWKS_URL (the token's iss)"
        weak = [a for a in self.jwks_algorithm_list if a[:2] not in {"RS", "ES", "PS"} and a != "EdDSA"]
        if weak or not self.jwks_algorithm_list:
            return f"CHAT_JWKS_ALGORITHMS takes public-key algorithms only (RS256, ES256, ...), not {weak}"
        for name, url in (("CHAT_OIDC_ISSUER", self.oidc_issuer), ("CHAT_JWKS_URL", self.jwks_url)):
            if url and not is_trusted_url(url):
                return f"{name}={url!r} must be an https URL (http only on a loopback address)"
        return None

    @property
    def hs_secret(self) -> str | None:
        """The key HS256 tokens are verified with: the operator's own secret; the public
        development secret only where development sign-in serves on loopback; else none."""
        if self.jwt_secret and self.jwt_secret != DEV_JWT_SECRET:
            return self.jwt_secret
        return self.jwt_secret if self.jwt_secret and self.dev_sign_in and is_loopback(self.host) else None

    @property
    def expected_issuer(self) -> str:
        return self.jwt_issuer or self.oidc_issuer

    @property
    def jwt_audience_list(self) -> list[str]:
        return [a.strip() for a in self.jwt_audience.split(",") if a.strip()]

    @property
    def jwks_algorithm_list(self) -> list[str]:
        return [a.strip() for a in self.jwks_algorithms.split(",") if a.strip()]

    @property
    def web_origin_list(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.web_origins.split(",") if o.strip()]

    @property
    def commands_topic(self) -> str:
        return f"{self.topic_prefix}commands"

    @property
    def events_topic(self) -> str:
        return f"{self.topic_prefix}events"

    @property
    def snapshots_topic(self) -> str:
        return f"{self.topic_prefix}snapshots"

    def delivery_topic(self, gateway_id: str) -> str:
        return f"{self.topic_prefix}delivery.{gateway_id}"

    @property
    def presence_signals_topic(self) -> str:
        return f"{self.topic_prefix}presence.signals"

    @property
    def presence_topic(self) -> str:
        return f"{self.topic_prefix}presence"

    def signals_channel(self, gateway_id: str) -> str:
        """The Redis pub/sub channel of a gateway's ephemeral frames (typing). Channels ignore
        the Redis database number, so the name carries the topic prefix too."""
        return f"{self.topic_prefix}signals.{gateway_id}"

    @property
    def retention_ms(self) -> int:
        return int(self.retention_days * DAY_MS)

    @property
    def resolved_sqlite_path(self) -> Path:
        return Path(self.sqlite_path) if self.sqlite_path else Path(self.data_dir) / "timelines.sqlite3"

    @property
    def cassandra_host_list(self) -> list[str]:
        return [h.strip() for h in self.cassandra_hosts.split(",") if h.strip()]

    # Media and push (issue 5)
    @property
    def media_topic(self) -> str:
        return f"{self.topic_prefix}media"

    @property
    def push_topic(self) -> str:
        return f"{self.topic_prefix}push"

    @property
    def push_dead_topic(self) -> str:
        return f"{self.topic_prefix}push.dead"

    @property
    def profiles_topic(self) -> str:
        return f"{self.topic_prefix}profiles"

    @property
    def push_allow_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """``push_allow_cidrs`` parsed; ``SettingsError`` naming the entry that is not a CIDR."""
        nets = []
        for entry in filter(None, (e.strip() for e in self.push_allow_cidrs.split(","))):
            try:
                nets.append(ipaddress.ip_network(entry))
            except ValueError as exc:
                raise SettingsError(f"CHAT_PUSH_ALLOW_CIDRS: {entry!r} is not a CIDR ({exc})") from None
        return nets

    @property
    def resolved_media_dir(self) -> Path:
        return Path(self.media_dir) if self.media_dir else Path(self.data_dir) / "media"

    @property
    def media_type_list(self) -> list[str]:
        return [t.strip().lower() for t in self.media_types.split(",") if t.strip()]
