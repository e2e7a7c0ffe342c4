"""The gateway's word on presence: a ``PresenceSignal`` per user on connect, disconnect and
heartbeat, listing every device of the user this gateway holds (keyed by user id, on the
presence signals topic). The presence worker decides what that means (streams/presence_agents.py).
"""

from __future__ import annotations

import asyncio
import logging
import time

from chat.events import PresenceSignal
from chat.settings import Settings
from gateway.kafka import CommandProducer
from gateway.registry import HEARTBEAT_CHUNK, Registry

log = logging.getLogger(__name__)


class PresenceSignals:
    def __init__(self, settings: Settings, producer: CommandProducer, registry: Registry) -> None:
        self.topic = settings.presence_signals_topic
        self.gateway_id = settings.gateway_id
        self.producer = producer
        self.registry = registry

    def _send(self, user_id: str, kind: str, device_id: str | None, at: int) -> None:
        signal = PresenceSignal(user_id=user_id, gateway_id=self.gateway_id, kind=kind,
                                devices=self.registry.devices(user_id), at=at, device_id=device_id)
        future = self.producer.send(signal, user_id, self.topic)
        future.add_done_callback(_log_failure)

    def connected(self, user_id: str, device_id: str) -> None:
        self._send(user_id, "connected", device_id, _now_ms())

    def disconnected(self, user_id: str, device_id: str) -> None:
        self._send(user_id, "disconnected", device_id, _now_ms())

    async def heartbeat(self, users: list[str] | None = None, chunk: int = HEARTBEAT_CHUNK) -> int:
        """``users`` (default: every user connected here): still here, with these devices.
        Returns how many. ``chunk`` users at a time, yielding to the loop in between; a user
        gone meanwhile gets no heartbeat."""
        now = _now_ms()
        users = list(self.registry.by_user) if users is None else users
        sent = 0
        for i in range(0, len(users), chunk):
            for user_id in users[i:i + chunk]:
                if user_id in self.registry.by_user:
                    self._send(user_id, "heartbeat", None, now)
                    sent += 1
            await asyncio.sleep(0)
        return sent


def _now_ms() -> int:
    return int(time.time() * 1000)


def _log_failure(future: object) -> None:
    exc = future.exception() if not future.cancelled() else None  # type: ignore[attr-defined]
    if exc is not None:
        log.warning("presence signal not produced: %s", exc)
