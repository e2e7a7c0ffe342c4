"""Receipts projection in Redis: per conversation, per member, a delivered and a read watermark
(not a row per message). ``conv:{id}:receipts`` (``chat.keys``) is a hash ``"<user>|d"`` /
``"<user>|r"`` -> seq.

Watermarks only move forward (a Lua max), so applying an event again changes nothing. A
message also moves its sender's watermarks: sending reads everything before it.
"""

from __future__ import annotations

from typing import Any, Iterable

import redis.asyncio as redis

from chat import keys
from chat.events import Event, MessageAccepted, ReceiptRecorded
from chat.redis_pool import Script, run_pipeline

# ARGV: field, seq, field, seq, ...; each field takes the larger value.
_ADVANCE = """
for i = 1, #ARGV, 2 do
  local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0')
  if tonumber(ARGV[i + 1]) > cur then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
return 0
"""

# The keys this projection owns (``chat rebuild receipts`` replaces exactly these).
OWNED_KEYS = keys.owned("conv:{id}:receipts")
SCAN_PATTERNS = ("conv:{*}:receipts",)


_key = keys.receipts


class ReceiptProjection:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._advance = Script(client, _ADVANCE)

    async def apply(self, events: Iterable[Event]) -> None:
        """Advance the watermarks of a batch in one pipeline (forward only: safe twice)."""
        advances: list[tuple[str, list[Any]]] = []
        for event in events:
            if isinstance(event, MessageAccepted):
                marks: list[Any] = [f"{event.sender_id}|d", event.seq, f"{event.sender_id}|r", event.seq]
            elif isinstance(event, ReceiptRecorded):
                marks = [f"{event.user_id}|d", event.seq]
                if event.status == "read":
                    marks += [f"{event.user_id}|r", event.seq]
            else:
                continue
            advances.append((_key(event.conversation_id), marks))

        def build(pipe: Any) -> None:
            for key, marks in advances:
                self._advance.queue(pipe, [key], marks)

        if advances:
            await run_pipeline(self.redis, build, self._advance)

    async def watermarks(self, conversation_id: str) -> dict[str, dict[str, int]]:
        """user -> {"delivered_seq", "read_seq"} for everyone who has any."""
        result: dict[str, dict[str, int]] = {}
        for field, seq in (await self.redis.hgetall(_key(conversation_id))).items():
            user, _, kind = field.decode().rpartition("|")
            marks = result.setdefault(user, {"delivered_seq": 0, "read_seq": 0})
            marks["delivered_seq" if kind == "d" else "read_seq"] = int(seq)
        return result

    async def read_seqs(self, user_id: str, conversation_ids: list[str]) -> list[int]:
        pipe = self.redis.pipeline(transaction=False)
        for cid in conversation_ids:
            pipe.hget(_key(cid), f"{user_id}|r")
        return [int(v) if v is not None else 0 for v in await pipe.execute()]
