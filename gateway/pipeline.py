"""The gateway's probe through the pipeline: ``/healthz`` is 200 only while it is answered.

Every ``probe_interval_s`` (2 s) the gateway sends a ``PipelineProbe`` to each partition of the
commands topic, and the stream worker whose sequencer serves that partition answers it on this
gateway's delivery topic. An answer shows that the broker takes commands, that a live worker
has the partition's sequencer recovered and is reading its commands, and that this gateway's
delivery consumer reads; a stalled worker or consumer stops the answers. A partition whose last
answer is older than ``probe_stale_s`` (or that was never answered) fails the check. A command
waits behind the same queue, so the check fails about when requests start to time out.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time

from chat.errors import Unavailable
from chat.events import PipelineProbe
from chat.ids import new_request_id
from chat.settings import Settings
from gateway.kafka import CommandProducer
from gateway.registry import Registry

log = logging.getLogger(__name__)


class Prober:
    def __init__(self, settings: Settings, producer: CommandProducer, registry: Registry) -> None:
        self.settings = settings
        self.producer = producer
        self.registry = registry
        self.answered: dict[int, float] = {}  # partition -> time.monotonic() of its last answer
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._probe_forever(p)) for p in range(self.settings.partitions)]

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()

    def ages(self) -> dict[int, float]:
        """Seconds since each partition's last answer (infinite: never answered)."""
        now = time.monotonic()
        return {p: now - self.answered[p] if p in self.answered else math.inf
                for p in range(self.settings.partitions)}

    def healthy(self) -> bool:
        return all(age < self.settings.probe_stale_s for age in self.ages().values())

    async def _probe_forever(self, partition: int) -> None:
        while True:
            await self.probe(partition)
            await asyncio.sleep(self.settings.probe_interval_s)

    async def probe(self, partition: int) -> bool:
        """One probe of one partition; True once it is answered (within ``probe_stale_s``)."""
        probe_id = new_request_id()
        probe = PipelineProbe(gateway_id=self.settings.gateway_id, probe_id=probe_id, partition=partition,
                              sent_at=int(time.time() * 1000))
        waiter = self.registry.expect(probe_id)
        try:
            await self.producer.send(probe, "", partition=partition)
            await self.registry.wait(probe_id, waiter, self.settings.probe_stale_s)
        except Unavailable as exc:
            log.warning("pipeline probe of commands partition %d: %s", partition, exc)
            return False
        finally:
            self.registry.pending.pop(probe_id, None)
        self.answered[partition] = time.monotonic()
        return True
