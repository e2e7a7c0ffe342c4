"""Prometheus metrics of one gateway process."""

from __future__ import annotations

import re
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from chat.events import BatchedDelivery, Delivery
from chat.loop_watch import LAG_BUCKETS
from gateway.outbound import Outbound


_TYPE = re.compile(rb'"type":\s*"([a-z_]+)"')


def frame_type(frame: bytes) -> str:
    """A pre-encoded frame's ``type`` (the first one in it: frames put it first)."""
    found = _TYPE.search(frame, 0, 200)
    return found[1].decode() if found else "unknown"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.connections = Gauge("chat_connections_open", "Open WebSocket connections", registry=self.registry)
        self.frames_in = Counter("chat_frames_in_total", "Frames received from clients", ["type"],
                                 registry=self.registry)
        self.deliveries = Counter("chat_deliveries_total", "Delivery records consumed", registry=self.registry)
        self.frames_out = Counter("chat_frames_out_total", "Frames routed to this gateway's sockets, by type",
                                  ["type"], registry=self.registry)
        self.errors = Counter("chat_errors_total", "Errors answered to clients", ["code"], registry=self.registry)
        self.send_to_ack = Histogram(
            "chat_send_to_ack_seconds", "From a send reaching this gateway to its ack leaving it",
            buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5), registry=self.registry)
        self.pipeline_up = Gauge("chat_pipeline_up", "1 while every commands partition answers the gateway's "
                                 "probe within probe_stale_s (as /healthz's pipeline check)", registry=self.registry)
        self.pipeline_age = Gauge("chat_pipeline_answer_age_seconds", "Since the last answer to this gateway's probe "
                                  "of a commands partition (+Inf: never answered)", ["partition"],
                                  registry=self.registry)
        self.delivery_poll_age = Gauge("chat_delivery_consumer_poll_age_seconds", "Since the delivery consumer's "
                                       "thread last came back from a poll", registry=self.registry)
        self.delivery_lag = Gauge("chat_delivery_consumer_lag", "Records on this gateway's delivery topic not read "
                                  "yet (NaN: the broker did not say)", registry=self.registry)
        self.outbound_peak = Gauge("chat_outbound_peak_bytes", "The most bytes one socket held at once since "
                                   "start (outbox, held frames, transport buffer)", registry=self.registry)
        self.outbound_max = Gauge("chat_outbound_max_bytes", "The bound on those bytes (CHAT_MAX_QUEUED_BYTES)",
                                  registry=self.registry)
        self.slow_closed = Gauge("chat_slow_consumer_closes", "Sockets closed since start for holding more than the "
                                 "bound (close code 1013)", registry=self.registry)
        self.loop_lag = Histogram("chat_event_loop_lag_seconds", "How late the event loop woke for a timer "
                                  "(chat/loop_watch.py)", buckets=LAG_BUCKETS, registry=self.registry)
        self._sent: dict[tuple[str, str], float] = {}

    def sent(self, user_id: str, client_msg_id: str) -> None:
        if len(self._sent) < 100_000:
            self._sent[(user_id, client_msg_id)] = time.perf_counter()

    def acked(self, user_id: str, client_msg_id: str) -> None:
        started = self._sent.pop((user_id, client_msg_id), None)
        if started is not None:
            self.send_to_ack.observe(time.perf_counter() - started)

    def forget(self, user_id: str, client_msg_id: str) -> None:
        """A send that will never be acked (refused before its command was produced)."""
        self._sent.pop((user_id, client_msg_id), None)

    def delivered(self, deliveries: list[Delivery | BatchedDelivery]) -> None:
        """Count deliveries and frames out by type: a frame per target (without building a
        ``Target`` per user of a batched delivery, which cost a big group's fan-out ms)."""
        self.deliveries.inc(len(deliveries))
        for delivery in deliveries:
            n = (len(delivery.users) + len(delivery.devices) if isinstance(delivery, BatchedDelivery)
                 else len(delivery.targets))
            self.frames_out.labels(frame_type(delivery.frame)).inc(n)

    def observe_pipeline(self, ages: dict[int, float], up: bool, poll_age: float, lag: int | None) -> None:
        """Read when scraped: the probe's answers and the delivery consumer's progress."""
        self.pipeline_up.set(1 if up else 0)
        for partition, age in ages.items():
            self.pipeline_age.labels(str(partition)).set(age)
        self.delivery_poll_age.set(poll_age)
        self.delivery_lag.set(float("nan") if lag is None else lag)

    def observe_outbound(self, outbound: Outbound) -> None:
        """Read when scraped: the sockets' byte bound and what it saw."""
        self.outbound_peak.set(outbound.peak_bytes)
        self.outbound_max.set(outbound.max_bytes)
        self.slow_closed.set(outbound.slow_closed)

    def render(self) -> bytes:
        return generate_latest(self.registry)
