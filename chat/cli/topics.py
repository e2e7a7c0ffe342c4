"""``chat topics``: the topics, their partitions and offsets, and each agent's consumer lag.

Lag is the reported high watermark minus the consumer group's committed offset. On Tansu the
high watermark is wrong (too low, see README), so lag there reads low, possibly negative:
shown as reported, never clamped, and marked ``*``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from chat.errors import Unavailable
from chat.logread import QUIET, partitions_of
from chat.settings import Settings


def add_parser(commands: Any) -> None:
    p = commands.add_parser("topics", help="topics, partitions, offsets and consumer lag per agent",
                            description="List the topics with the configured prefix (CHAT_TOPIC_PREFIX),"
                            " their partitions' low and high offsets, and for the stream agents the"
                            " committed offset and lag of their consumer group (CHAT_APP_ID).")
    p.add_argument("--all", action="store_true", help="every topic on the broker, not only the prefix's")
    p.set_defaults(run=run)


def agents(settings: Settings) -> dict[str, str]:
    """topic -> the Faust agent that consumes it (consumer group ``CHAT_APP_ID``)."""
    return {settings.commands_topic: "sequence", settings.events_topic: "project"}


def rows(settings: Settings, show_all: bool = False, timeout: float = 10.0) -> list[dict[str, Any]]:
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": settings.app_id,
                         "enable.auto.commit": False, **QUIET})
    try:
        names = sorted(t for t in _topic_names(consumer, settings, timeout)
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


def _topic_names(consumer: Consumer, settings: Settings, timeout: float) -> list[str]:
    try:
        return list(consumer.list_topics(timeout=timeout).topics)
    except KafkaException as exc:
        raise Unavailable(f"the broker at {settings.kafka_bootstrap} is unreachable ({exc.args[0].str()})") from exc


def run(settings: Settings, args: argparse.Namespace) -> int:
    table = rows(settings, args.all)
    header = ("TOPIC", "PART", "LOW", "HIGH*", "AGENT", "GROUP", "COMMITTED", "LAG*")
    lines = [header]
    for r in table:
        lines.append((r["topic"], str(r["partition"]), str(r["low"]), str(r["high"]), r["agent"] or "-",
                      settings.app_id if r["agent"] else "-",
                      "-" if r["committed"] is None else str(r["committed"]),
                      "-" if r["lag"] is None else str(r["lag"])))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip())
    print(f"{len({r['topic'] for r in table})} topics on {settings.kafka_bootstrap}. * high watermarks, and so"
          " lag, are reported by the broker and wrong on Tansu (too low).", file=sys.stderr)
    return 0


