"""Media projection in Redis: what was uploaded, by whom, and where it was sent.

Keys:
- ``media:{id}``       hash: uploader, content_type, size, sha256, uploaded_at, thumbnail (set once made)
- ``media:{id}:sent``  hash conversation id -> the seq of the first message that carried it
- ``media:{id}:uses``  set of "<conversation id> <seq>": the messages carrying it that are not deleted

A deletion (protocol 1.1) erases a medium once no message that is not deleted carries it and no
profile uses it as an avatar (``media:{id}`` field ``avatar``): its bytes and thumbnail leave the
object store and its keys leave Redis, so nobody can download it again.

The gateway writes ``media:{id}`` when an upload is complete; the projector records where a
medium was sent from ``MessageAccepted`` (before the message is delivered, so every recipient can
download it at once). ``HSETNX`` keeps the first seq: events of a conversation are applied in log
order, so replaying them changes nothing.

Media ids are made by the server (``chat.ids.new_media_id``); one from a client is checked with
``chat.ids.is_media_id`` before it reaches these methods, since ``<id>:sent`` names the other key.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

import redis.asyncio as redis

from chat import keys
from chat.events import Event, MessageAccepted, MessageDeleted

if TYPE_CHECKING:
    from media.store import MediaStore

log = logging.getLogger(__name__)

# Drops a deleted message from a medium's uses; answers 1 when nothing else keeps the medium.
_RELEASE = """
redis.call('SREM', KEYS[2], ARGV[1])
if redis.call('SCARD', KEYS[2]) == 0 and redis.call('HEXISTS', KEYS[1], 'avatar') == 0 then
  return 1
end
return 0
"""


@dataclass(frozen=True, slots=True)
class MediaInfo:
    media_id: str
    uploader: str
    content_type: str
    size: int
    sha256: str
    uploaded_at: int
    thumbnail: bool = False


_key, _sent, _uses = keys.media, keys.media_sent, keys.media_uses


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
                pipe.sadd(_uses(event.media.media_id), f"{event.conversation_id} {event.seq}")
                touched = True
        if touched:
            await pipe.execute()

    async def erase_deleted(self, events: Iterable[Event], store: "MediaStore") -> list[str]:
        """For each deleted message with media: forget the use, and erase the medium (bytes,
        thumbnail, keys) if nothing else uses it. Returns the media ids erased. Safe to repeat."""
        from media.urls import thumbnail_key

        erased = []
        for event in events:
            if isinstance(event, MessageDeleted) and event.media_id is not None:
                media_id = event.media_id
                last = await self.redis.eval(_RELEASE, 2, _key(media_id), _uses(media_id),
                                             f"{event.conversation_id} {event.seq}")
                if last:
                    await store.delete(media_id)
                    await store.delete(thumbnail_key(media_id))
                    await self.redis.delete(_key(media_id), _sent(media_id), _uses(media_id))
                    erased.append(media_id)
        if erased:
            log.info("erased %d media of deleted messages", len(erased))
        return erased
