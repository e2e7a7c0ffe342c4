"""Topics, partitions, offsets and the stream agents' consumer lag (``chat topics``, worker metrics).

Lag is the high watermark minus the consumer group's committed offset: the records a group
has not committed yet.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from chat.errors import Unavailable
from chat.logread import QUIET, partitions_of
from chat.secure import KafkaRefusal, kafka_security
from chat.settings import Settings


def agents(settings: Settings) -> dict[str, str]:
    """topic -> the Faust agent that consumes it (consumer group ``CHAT_APP_ID``)."""
    return {settings.commands_topic: "sequence", settings.events_topic: "project",
            settings.presence_signals_topic: "presence", settings.presence_topic: "project_presence",
            settings.profiles_topic: "project_profiles"}


def rows(settings: Settings, show_all: bool = False, timeout: float = 10.0) -> list[dict[str, Any]]:
    refusal = KafkaRefusal()
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": settings.app_id,
                         "enable.auto.commit": False, **QUIET, **kafka_security(settings), "error_cb": refusal})
    try:
        names = sorted(t for t in _topic_names(consumer, settings, timeout, refusal)
                       if show_all or t.startswith(settings.topic_prefix))
        by_agent = agents(settings)
        out = []
        for topic in names:
            tps = [TopicPartition(topic, p) for p in partitions_of(consumer, settings.kafka_bootstrap, topic, timeout)]
            committed = ({tp.partition: tp.offset for tp in consumer.committed(tps, timeout)}
                         if topic in by_agent else {})
            for tp in tps:
                low, high = consumer.get_watermark_offsets(tp, timeout)
                done = committed.get(tp.partition)
                out.append({"topic": topic, "partition": tp.partition, "low": low, "high": high,
                            "agent": by_agent.get(topic), "committed": done if done is None or done >= 0 else None,
                            "lag": high - done if done is not None and done >= 0 else None})
        return out
    except KafkaException as exc:
        raise Unavailable(f"the broker at {settings.kafka_bootstrap} did not answer: {exc.args[0].str()}") from exc
    finally:
        consumer.close()


def _topic_names(consumer: Consumer, settings: Settings, timeout: float, refusal: KafkaRefusal) -> list[str]:
    try:
        return list(consumer.list_topics(timeout=timeout).topics)
    except KafkaException as exc:
        consumer.poll(0)  # serves error_cb, which list_topics does not
        raise Unavailable(refusal.explain(settings.kafka_bootstrap, f"the broker at {settings.kafka_bootstrap} is"
                                          f" unreachable ({exc.args[0].str()})")) from exc


