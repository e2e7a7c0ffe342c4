"""Prometheus metrics of a stream worker, served on ``CHAT_WORKER_METRICS_PORT`` (0: off).

- ``chat_worker_events_total{agent}``: records each agent handled;
- ``chat_projection_write_seconds{projection}``: one batch written to a projection;
- ``chat_batch_step_seconds{agent,step}`` and ``chat_batch_size{agent}``: where an agent's batch
  spends its time (``sequence``: ``handle``, then ``durable``, the wait for the broker to have
  its events; ``project``: ``write``, the projections, then ``deliver``, delivery and push);
- ``chat_event_loop_lag_seconds``: how late the worker's event loop woke (``chat.loop_watch``);
- ``chat_consumer_lag{agent,topic,partition}`` and ``chat_consumer_committed_offset``: the
  consumer group's committed offsets against the reported high watermarks, read at scrape time
  (``chat.offsets``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily

from chat.errors import ChatError
from chat.loop_watch import LAG_BUCKETS
from chat.offsets import rows
from chat.settings import Settings

log = logging.getLogger(__name__)

registry = CollectorRegistry()
events = Counter("chat_worker_events_total", "Records handled, by agent", ["agent"], registry=registry)
projection_write = Histogram(
    "chat_projection_write_seconds", "Writing one batch to a projection", ["projection"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5), registry=registry)


batch_step = Histogram(
    "chat_batch_step_seconds", "One step of an agent's batch", ["agent", "step"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5), registry=registry)
batch_size = Histogram(
    "chat_batch_size", "Records in an agent's batch", ["agent"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000), registry=registry)
loop_lag = Histogram("chat_event_loop_lag_seconds", "How late the event loop woke for a timer (chat/loop_watch.py)",
                     buckets=LAG_BUCKETS, registry=registry)


@contextmanager
def timed(projection: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        projection_write.labels(projection).observe(time.perf_counter() - started)


@contextmanager
def step(agent: str, name: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        batch_step.labels(agent, name).observe(time.perf_counter() - started)


class LagCollector:
    """Reads the group's offsets when scraped (at most every ``min_interval_s``)."""

    def __init__(self, settings: Settings, min_interval_s: float = 5.0) -> None:
        self.settings, self.min_interval_s = settings, min_interval_s
        self._rows: list[dict[str, Any]] = []
        self._read = 0.0

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if time.monotonic() - self._read >= self.min_interval_s:
            self._read = time.monotonic()
            try:
                self._rows = [r for r in rows(self.settings, timeout=3.0) if r["agent"]]
            except ChatError as exc:
                log.warning("consumer lag not read: %s", exc)
        lag = GaugeMetricFamily("chat_consumer_lag", "High watermark minus committed offset",
                                labels=["agent", "topic", "partition"])
        committed = GaugeMetricFamily("chat_consumer_committed_offset", "The agent's committed offset",
                                      labels=["agent", "topic", "partition"])
        for r in self._rows:
            labels = [r["agent"], r["topic"], str(r["partition"])]
            if r["lag"] is not None:
                lag.add_metric(labels, r["lag"])
                committed.add_metric(labels, r["committed"])
        yield lag
        yield committed


def serve(settings: Settings) -> None:
    """Start the endpoint in a thread, if ``CHAT_WORKER_METRICS_PORT`` is set."""
    if settings.worker_metrics_port:
        registry.register(LagCollector(settings))  # type: ignore[arg-type]
        start_http_server(settings.worker_metrics_port, addr=settings.host, registry=registry)
        log.info("worker metrics on http://%s:%d/metrics", settings.host, settings.worker_metrics_port)
