"""Create every topic up front with its partition count.

Faust does not create source topics, and a broker that auto-creates topics gives them its
default partition count: a topic used before it is created would get the wrong count, silently
(``infra.kafka`` turns auto-creation off). Run
``python -m infra.topics`` (or call ``ensure_topics``) before any producer or worker starts.
"""

from __future__ import annotations

import sys
import time
from typing import Mapping

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from chat.errors import ChatError, Unavailable
from chat.secure import KafkaRefusal, kafka_security
from chat.settings import Settings


class TopicMismatch(ChatError):
    """An existing topic has a different partition count than the one asked for."""


def core_topics(settings: Settings) -> dict[str, int]:
    """The topics every deployment needs, with their partition counts."""
    return {settings.commands_topic: settings.partitions, settings.events_topic: settings.partitions,
            settings.presence_signals_topic: settings.partitions, settings.presence_topic: settings.partitions,
            settings.media_topic: settings.partitions, settings.push_topic: settings.partitions,
            settings.push_dead_topic: settings.partitions, settings.profiles_topic: settings.partitions,
            settings.snapshots_topic: settings.partitions}


def core_topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """Topic configs at creation: the events, presence, media and profiles topics are the system of record,
    kept forever; commands (each answered by an event) and push jobs a week; presence signals
    (connects, disconnects, heartbeats) matter for a minute, kept a day; the push dead letters
    30 days, for someone to look at. Every topic gets the configured ``min.insync.replicas``."""
    forever, week = {"retention.ms": "-1"}, {"retention.ms": str(7 * 86_400_000)}
    kept = {settings.events_topic: forever, settings.presence_topic: forever, settings.media_topic: forever,
            settings.profiles_topic: forever,
            settings.commands_topic: week, settings.push_topic: week,
            settings.push_dead_topic: {"retention.ms": str(30 * 86_400_000)},
            settings.presence_signals_topic: {"retention.ms": str(86_400_000)}}
    configs = {name: {**retention, **durability(settings)} for name, retention in kept.items()}
    configs[settings.snapshots_topic] = snapshot_topic_config(settings)
    return configs


SNAPSHOT_MAX_BYTES = 16 * 1024 * 1024  # the largest snapshot record (one conversation's state)


def snapshot_topic_config(settings: Settings) -> dict[str, str]:
    """The snapshots topic is compacted: the last snapshot of each conversation is kept, the
    ones before it go. Small segments and a low dirty ratio let the cleaner run soon, so a
    takeover reads little more than the live state; tombstones stay a day."""
    return {"cleanup.policy": "compact", "min.insync.replicas": str(settings.min_insync_replicas),
            "segment.ms": str(600_000), "min.cleanable.dirty.ratio": "0.1",
            "delete.retention.ms": str(86_400_000), "max.message.bytes": str(SNAPSHOT_MAX_BYTES)}


def durability(settings: Settings) -> dict[str, str]:
    """The configs every topic is created with: deletes by retention, never compaction, and
    an acks=all write needs ``min.insync.replicas`` copies before it is acknowledged."""
    return {"cleanup.policy": "delete", "min.insync.replicas": str(settings.min_insync_replicas)}


def ensure_topics(
    bootstrap: str, specs: dict[str, int], replication_factor: int = 1, timeout: float = 30,
    configs: dict[str, dict[str, str]] | None = None, client_config: Mapping[str, str] | None = None,
) -> dict[str, int]:
    """Create the missing topics of ``specs`` (name -> partitions); check the existing ones.

    Returns the partition count of each topic. Raises ``TopicMismatch`` when an existing
    topic's count differs, ``Unavailable`` when the broker does not answer in ``timeout``.
    Running it twice is a no-op. ``client_config``: more librdkafka properties (a secured
    broker's: ``chat.secure.kafka_security``).
    """
    refusal = KafkaRefusal()
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0, **(client_config or {}), "error_cb": refusal})
    existing = _partition_counts(admin, timeout, refusal=refusal, bootstrap=bootstrap)
    configs = configs or {}
    missing = [NewTopic(name, n, replication_factor, config=configs.get(name, {}))
               for name, n in specs.items() if name not in existing]
    if missing:
        futures = admin.create_topics(missing, operation_timeout=timeout, request_timeout=timeout)
        for name, future in futures.items():
            try:
                future.result(timeout)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:  # lost a race: checked below
                    raise Unavailable(f"cannot create topic {name!r}: {exc.args[0].str()}") from exc
        existing = _partition_counts(admin, timeout, wait_for=[t.topic for t in missing], refusal=refusal,
                                     bootstrap=bootstrap)
    absent = [name for name in specs if name not in existing]
    if absent:
        raise Unavailable(f"topics {absent} were created but are not in the metadata after {timeout:.0f}s")
    wrong = {name: (n, existing[name]) for name, n in specs.items() if existing[name] != n}
    if wrong:
        detail = ", ".join(f"{name} has {have} partitions, {want} asked" for name, (want, have) in wrong.items())
        raise TopicMismatch(f"topic partition counts differ: {detail}; delete the topics or change the settings")
    return {name: existing[name] for name in specs}


def _partition_counts(admin: AdminClient, timeout: float, wait_for: list[str] = (), *,
                      refusal: KafkaRefusal | None = None, bootstrap: str = "") -> dict[str, int]:
    """Partition count per topic from metadata; waits until every ``wait_for`` topic is listed.
    Asks in slices of at most 2 s, so that a broker refusing the client's credentials or
    certificate (``refusal``) ends the wait at once, with that reason."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            meta = admin.list_topics(timeout=max(0.5, min(2.0, deadline - time.monotonic())))
        except KafkaException as exc:
            admin.poll(0)  # serves error_cb, which list_topics does not
            if refusal is not None and refusal.reason:
                raise Unavailable(refusal.explain(bootstrap, "")) from exc
            if time.monotonic() < deadline:
                continue
            raise Unavailable(f"broker does not answer: {exc.args[0].str()}") from exc
        counts = {name: len(t.partitions) for name, t in meta.topics.items() if t.error is None}
        if all(name in counts for name in wait_for) or time.monotonic() > deadline:
            return counts
        time.sleep(0.1)


def main() -> int:
    settings = Settings.from_env()
    try:
        counts = ensure_topics(settings.kafka_bootstrap, core_topics(settings), settings.replication_factor,
                               configs=core_topic_configs(settings), client_config=kafka_security(settings))
    except ChatError as exc:
        print(f"infra.topics: {exc}", file=sys.stderr)
        return 1
    for name, n in counts.items():
        print(f"topic {name}: {n} partitions")
    return 0


if __name__ == "__main__":
    sys.exit(main())

