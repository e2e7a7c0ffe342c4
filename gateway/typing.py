"""Typing indicators: validated and rate-limited here, fanned out over Redis pub/sub
(``projections.signals``), never stored.

An indicator lasts ``typing_ttl_s`` (10 s) without a refresh: the frame carries ``ttl_ms`` so
clients can expire it themselves, and the gateway the typist is connected to sends
``typing: false`` when it lapses or when the typist's last device here disconnects. Only
``typing: true`` spends the per-user token bucket: stopping is never refused.
"""

from __future__ import annotations

import asyncio
import logging

from chat import frames
from chat.errors import RateLimited
from chat.settings import Settings
from gateway.limits import TokenBucket
from projections.signals import SignalBus

log = logging.getLogger(__name__)


class Typing:
    def __init__(self, settings: Settings, bus: SignalBus, limit: TokenBucket) -> None:
        self.settings = settings
        self.bus = bus
        self.limit = limit
        self.ttl_ms = int(settings.typing_ttl_s * 1000)
        self.lapses: dict[tuple[str, str], asyncio.TimerHandle] = {}  # (user, conversation) -> expiry

    async def update(self, user_id: str, conversation_id: str, typing: bool) -> None:
        """A member started (or refreshed) or stopped typing in a conversation."""
        if typing:
            retry_after_ms = await self.limit.take(user_id)
            if retry_after_ms:
                raise RateLimited(f"more than {self.settings.typing_rate_burst} typing frames at once or "
                                  f"{self.settings.typing_rate_per_s:g} per second; retry in {retry_after_ms} ms",
                                  retry_after_ms=retry_after_ms)
        lapse = self.lapses.pop((user_id, conversation_id), None)
        if lapse is not None:
            lapse.cancel()
        if typing:
            self.lapses[(user_id, conversation_id)] = asyncio.get_running_loop().call_later(
                self.settings.typing_ttl_s, self._lapse, user_id, conversation_id)
        await self._send(user_id, conversation_id, typing)

    async def gone(self, user_id: str) -> None:
        """The user's last device on this gateway disconnected: whatever they typed stops."""
        stopped = [key for key in self.lapses if key[0] == user_id]
        for key in stopped:
            self.lapses.pop(key).cancel()
        await asyncio.gather(*(self.gone_quietly(user_id, cid) for _, cid in stopped))

    def _lapse(self, user_id: str, conversation_id: str) -> None:
        self.lapses.pop((user_id, conversation_id), None)
        asyncio.ensure_future(self.gone_quietly(user_id, conversation_id))

    async def gone_quietly(self, user_id: str, conversation_id: str) -> None:
        try:
            await self._send(user_id, conversation_id, False)
        except Exception:  # Redis away: clients expire the indicator after ttl_ms themselves
            log.warning("typing stop for %s in %s not sent", user_id, conversation_id, exc_info=True)

    async def _send(self, user_id: str, conversation_id: str, typing: bool) -> None:
        frame = frames.typing_frame(conversation_id, user_id, typing, self.ttl_ms)
        await self.bus.to_members(conversation_id, frame, exclude=user_id)

    def close(self) -> None:
        for lapse in self.lapses.values():
            lapse.cancel()
        self.lapses.clear()
