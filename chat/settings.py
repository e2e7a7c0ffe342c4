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

DAY_MS = 86_400_000
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


@dataclass(frozen=True)
class Settings:
    # HTTP / WebSocket
    host: str = "127.0.0.1"
    port: int = 8080
    gateway_id: str = field(default_factory=lambda: f"{socket.gethostname()}-8080")
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
    batch_window_ms: float = 5.0  # the agents' batch: at most this long to gather (or 500 events)
    # Redis
    redis_url: str = "redis://127.0.0.1:16379/0"
    # Connections per process; a request waits up to redis_wait_s for a free one (then 503).
    redis_max_connections: int = 64
    redis_wait_s: float = 5.0
    # Timeline store: "sqlite" (embedded, one machine) or "cassandra"
    timeline_backend: str = "sqlite"
    data_dir: str = ".data"
    sqlite_path: str = ""
    cassandra_hosts: str = ""
    cassandra_keyspace: str = "chat"
    retention_days: float = 90.0
    sweep_interval_s: float = 300.0
    # Auth. Development sign-in (POST /v1/dev/token): None (CHAT_DEV_AUTH unset or empty) means
    # on only when the gateway is bound to loopback; see ``dev_sign_in`` and ``auth_problem``.
    jwt_secret: str = DEV_JWT_SECRET
    jwt_algorithm: str = "HS256"
    dev_auth: bool | None = None
    token_ttl_s: int = 86_400
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
    # Worker
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    app_id: str = "chat"
    log_level: str = "INFO"
    log_format: str = "json"  # "json" (one object per line) or "text"
    # Stream worker's Prometheus endpoint (GET /metrics); 0 = off
    worker_metrics_port: int = 0

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
    def dev_sign_in(self) -> bool:
        """Whether ``POST /v1/dev/token`` answers: as set, else only on a loopback bind."""
        return is_loopback(self.host) if self.dev_auth is None else self.dev_auth

    def auth_problem(self) -> str | None:
        """Why a gateway must not serve with these settings, or None.

        The built-in secret is public: anyone could sign a token for any user with it. So it
        is allowed only for development sign-in on a loopback bind. Anywhere else the gateway
        needs CHAT_JWT_SECRET, and development sign-in (anyone can be anyone) stays off there
        unless CHAT_DEV_AUTH=true says otherwise.
        """
        if self.jwt_secret and self.jwt_secret != DEV_JWT_SECRET:
            return None
        if not is_loopback(self.host):
            return (f"CHAT_HOST={self.host!r} is not a loopback address (127.0.0.0/8, ::1, localhost), "
                    "and the built-in development secret and development sign-in work only there: "
                    "set CHAT_JWT_SECRET to a secret of your own (development sign-in then stays off "
                    "unless CHAT_DEV_AUTH=true), or bind CHAT_HOST=127.0.0.1")
        if not self.dev_sign_in:
            return ("CHAT_JWT_SECRET must be set to a secret of your own when development sign-in "
                    "is off (CHAT_DEV_AUTH=false)")
        return None

    @property
    def commands_topic(self) -> str:
        return f"{self.topic_prefix}commands"

    @property
    def events_topic(self) -> str:
        return f"{self.topic_prefix}events"

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
    def resolved_media_dir(self) -> Path:
        return Path(self.media_dir) if self.media_dir else Path(self.data_dir) / "media"

    @property
    def media_type_list(self) -> list[str]:
        return [t.strip().lower() for t in self.media_types.split(",") if t.strip()]
