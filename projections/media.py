"""Media projection in Redis: what was uploaded, by whom, and where it was sent.

Keys:
- ``media:{id}``       hash: uploader, content_type, size, sha256, uploaded_at, thumbnail (set once made)
- ``media:{id}:sent``  hash conversation id -> the seq of the first message that carried it

The gateway writes ``media:{id}`` when an upload is complete; the projector records where a
medium was sent from ``MessageAccepted`` (before the message is delivered, so every recipient can
download it at once). ``HSETNX`` keeps the first seq: events of a conversation are applied in log
order, so replaying them changes nothing.

Media ids are made by the server (``chat.ids.new_media_id``); one from a client is checked with
``chat.ids.is_media_id`` before it reaches these methods, since ``<id>:sent`` names the other key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import redis.asyncio as redis

from chat import keys
from chat.events import Event, MessageAccepted


@dataclass(frozen=True, slots=True)
class MediaInfo:
    media_id: str
    uploader: str
    content_type: str
    size: int
    sha256: str
    uploaded_at: int
    thumbnail: bool = False


_key, _sent = keys.media, keys.media_sent


class MediaProjection:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    async def create(self, info: MediaInfo) -> None:
        await self.redis.hset(_key(info.media_id), mapping={
            "uploader": info.uploader, "content_type": info.content_type, "size": info.size,
            "sha256": info.sha256, "uploaded_at": info.uploaded_at})

    async def get(self, media_id: str) -> MediaInfo | None:
        raw = await self.redis.hgetall(_key(media_id))
        if not raw:
            return None
        f = {k.decode(): v.decode() for k, v in raw.items()}
        return MediaInfo(media_id, f["uploader"], f["content_type"], int(f["size"]), f["sha256"],
                         int(f["uploaded_at"]), thumbnail="thumbnail" in f)

    async def mark_thumbnail(self, media_id: str, size: int) -> None:
        await self.redis.hset(_key(media_id), "thumbnail", size)

    async def sent_in(self, media_id: str) -> dict[str, int]:
        return {k.decode(): int(v) for k, v in (await self.redis.hgetall(_sent(media_id))).items()}

    async def apply(self, events: Iterable[Event]) -> None:
        """Record the conversations media was sent in, in one pipeline."""
        pipe = self.redis.pipeline(transaction=False)
        touched = False
        for event in events:
            if isinstance(event, MessageAccepted) and event.media is not None:
                pipe.hsetnx(_sent(event.media.media_id), event.conversation_id, event.seq)
                touched = True
        if touched:
            await pipe.execute()
