"""Create every topic up front with its partition count.

Faust does not create source topics and Tansu auto-creates unknown topics with 4 partitions,
so a topic that is used before it is created gets the wrong count, silently. Run
``python -m infra.topics`` (or call ``ensure_topics``) before any producer or worker starts.
"""

from __future__ import annotations

import sys
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from chat.errors import ChatError, Unavailable
from chat.settings import Settings


class TopicMismatch(ChatError):
    """An existing topic has a different partition count than the one asked for."""


def core_topics(settings: Settings) -> dict[str, int]:
    """The topics every deployment needs, with their partition counts."""
    return {settings.commands_topic: settings.partitions, settings.events_topic: settings.partitions,
            settings.presence_signals_topic: settings.partitions, settings.presence_topic: settings.partitions,
            settings.media_topic: settings.partitions, settings.push_topic: settings.partitions,
            settings.push_dead_topic: settings.partitions}


def core_topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """Topic configs at creation: the events, presence and media topics are the system of record,
    kept forever; presence signals (connects, disconnects, heartbeats) matter for a minute, kept a
    day; push jobs a week; the push dead letters 30 days, for someone to look at."""
    forever = {"retention.ms": "-1", "cleanup.policy": "delete"}
    week = {"retention.ms": str(7 * 86_400_000), "cleanup.policy": "delete"}
    return {settings.events_topic: forever, settings.presence_topic: forever, settings.media_topic: forever,
            settings.push_topic: week, settings.push_dead_topic: {"retention.ms": str(30 * 86_400_000),
                                                                  "cleanup.policy": "delete"},
            settings.presence_signals_topic: {"retention.ms": str(86_400_000), "cleanup.policy": "delete"}}


def ensure_topics(
    bootstrap: str, specs: dict[str, int], replication_factor: int = 1, timeout: float = 30,
    configs: dict[str, dict[str, str]] | None = None,
) -> dict[str, int]:
    """Create the missing topics of ``specs`` (name -> partitions); check the existing ones.

    Returns the partition count of each topic. Raises ``TopicMismatch`` when an existing
    topic's count differs, ``Unavailable`` when the broker does not answer in ``timeout``.
    Running it twice is a no-op.
    """
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    existing = _partition_counts(admin, timeout)
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
        existing = _partition_counts(admin, timeout, wait_for=[t.topic for t in missing])
    absent = [name for name in specs if name not in existing]
    if absent:
        raise Unavailable(f"topics {absent} were created but are not in the metadata after {timeout:.0f}s")
    wrong = {name: (n, existing[name]) for name, n in specs.items() if existing[name] != n}
    if wrong:
        detail = ", ".join(f"{name} has {have} partitions, {want} asked" for name, (want, have) in wrong.items())
        raise TopicMismatch(f"topic partition counts differ: {detail}; delete the topics or change the settings")
    return {name: existing[name] for name in specs}


def _partition_counts(admin: AdminClient, timeout: float, wait_for: list[str] = ()) -> dict[str, int]:
    """Partition count per topic from metadata; waits until every ``wait_for`` topic is listed."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            meta = admin.list_topics(timeout=max(1.0, deadline - time.monotonic()))
        except KafkaException as exc:
            raise Unavailable(f"broker does not answer: {exc.args[0].str()}") from exc
        counts = {name: len(t.partitions) for name, t in meta.topics.items() if t.error is None}
        if all(name in counts for name in wait_for) or time.monotonic() > deadline:
            return counts
        time.sleep(0.1)


def main() -> int:
    settings = Settings.from_env()
    try:
        counts = ensure_topics(settings.kafka_bootstrap, core_topics(settings), settings.replication_factor,
                               configs=core_topic_configs(settings))
    except ChatError as exc:
        print(f"infra.topics: {exc}", file=sys.stderr)
        return 1
    for name, n in counts.items():
        print(f"topic {name}: {n} partitions")
    return 0


if __name__ == "__main__":
    sys.exit(main())


def warm_partitions(bootstrap: str, topics: list[str] | None = None, idle_s: float = 1.0,
                    timeout: float = 300.0) -> dict[str, int]:
    """Read every partition of ``topics`` (default: all but internal ones) to its end.

    Design-around for Tansu's s3 engine: after a restart it loads a partition's next offset
    only when the partition is read; a record produced first is given an offset that is
    already taken and overwrites stored records. ``infra.run`` calls this after starting a
    durable broker and before starting anything that produces. Returns records read per topic.
    Never needed on Apache Kafka.
    """
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    metadata = admin.list_topics(timeout=timeout)
    names = topics if topics is not None else [t for t in metadata.topics if not t.startswith("__")]
    assignments = [TopicPartition(name, p, OFFSET_BEGINNING)
                   for name in names if name in metadata.topics
                   for p in metadata.topics[name].partitions]
    counts = {name: 0 for name in names}
    if not assignments:
        return counts
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "chat-infra-warmup",
                         "enable.auto.commit": False, "enable.partition.eof": True, "log_level": 0})
    deadline = time.monotonic() + timeout
    # The idle wait counts only once every partition has answered a fetch (records or its end):
    # after a restart, Tansu takes a while over the first fetch of many partitions, and an idle
    # second counted from the start read nothing at all once there were a few more topics.
    untouched = {(tp.topic, tp.partition) for tp in assignments}
    try:
        consumer.assign(assignments)
        idle_since = time.monotonic()
        while (untouched or time.monotonic() - idle_since < idle_s) and time.monotonic() < deadline:
            batch = consumer.consume(num_messages=10_000, timeout=0.2)
            for msg in batch:
                untouched.discard((msg.topic(), msg.partition()))
                if not msg.error():
                    counts[msg.topic()] += 1
                    idle_since = time.monotonic()
    finally:
        consumer.close()
    return counts
