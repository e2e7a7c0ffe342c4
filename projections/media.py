"""Media projection in Redis: what was uploaded, by whom, and where it was sent.

Keys:
- ``media:{id}``       hash: uploader, content_type, size, sha256, uploaded_at, thumbnail (set once made)
- ``media:{id}:sent``  hash conversation id -> the seq of the first message that carried it
- ``media:{id}:uses``  set of "<conversation id> <seq>": the messages carrying it that are not deleted
- ``media:expiry``     sorted set of media ids by when they expire (ms)

Expiry: an upload is due ``CHAT_MEDIA_UNSENT_TTL_S`` after it (24 h); each message that carries
it moves that to its own ``sent_at`` + retention (``ZADD GT``: the latest message wins), so a
medium lives as long as the last message that carries it. ``expire`` (a stream worker's timer)
erases what is due, bytes and keys, except a user's current avatar, which is looked at again a
TTL later. Every worker may sweep: erasing twice changes nothing.

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
from chat.settings import DAY_MS, Settings

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


_key, _sent, _uses, _expiry = keys.media, keys.media_sent, keys.media_uses, keys.media_expiry



class MediaProjection:
    def __init__(self, client: redis.Redis, unsent_ttl_ms: int = DAY_MS, retention_ms: int = 90 * DAY_MS) -> None:
        self.redis = client
        self.unsent_ttl_ms = unsent_ttl_ms
        self.retention_ms = retention_ms

    @classmethod
    def from_settings(cls, client: redis.Redis, settings: Settings) -> "MediaProjection":
        return cls(client, int(settings.media_unsent_ttl_s * 1000), settings.retention_ms)

    async def create(self, info: MediaInfo) -> None:
        """Record a complete upload, due to expire ``unsent_ttl_ms`` after it unless it is sent.

        The expiry first, then the medium: the two keys live in different Redis Cluster slots,
        so no transaction holds both; a crash between them leaves an expiry without a medium,
        which ``expire`` erases (harmlessly), never a medium that would not expire."""
        await self.redis.zadd(_expiry(), {info.media_id: info.uploaded_at + self.unsent_ttl_ms})
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
                pipe.zadd(_expiry(), {event.media.media_id: event.sent_at + self.retention_ms}, gt=True)
                touched = True
        if touched:
            await pipe.execute()

    async def erase_deleted(self, events: Iterable[Event], store: "MediaStore") -> list[str]:
        """For each deleted message with media: forget the use, and erase the medium (bytes,
        thumbnail, keys) if nothing else uses it. Returns the media ids erased. Safe to repeat."""
        erased = []
        for event in events:
            if isinstance(event, MessageDeleted) and event.media_id is not None:
                media_id = event.media_id
                last = await self.redis.eval(_RELEASE, 2, _key(media_id), _uses(media_id),
                                             f"{event.conversation_id} {event.seq}")
                if last:
                    await self.erase(media_id, store)
                    erased.append(media_id)
        if erased:
            log.info("erased %d media of deleted messages", len(erased))
        return erased

    async def erase(self, media_id: str, store: "MediaStore") -> None:
        """Delete a medium's bytes, thumbnail and keys. Safe to repeat."""
        from media.urls import thumbnail_key

        await store.delete(media_id)
        await store.delete(thumbnail_key(media_id))
        await self.redis.delete(_key(media_id), _sent(media_id), _uses(media_id))
        await self.redis.zrem(_expiry(), media_id)

    async def expire(self, store: "MediaStore", now_ms: int, limit: int = 500) -> list[str]:
        """Erase up to ``limit`` media due by ``now_ms``; returns their ids. A medium that is its
        uploader's current avatar is kept and looked at again ``unsent_ttl_ms`` later."""
        due = await self.redis.zrangebyscore(_expiry(), "-inf", now_ms, start=0, num=limit, withscores=True)
        erased = []
        for raw, score in due:
            media_id = raw.decode()
            uploader = await self.redis.hget(_key(media_id), "uploader")
            if uploader is not None and await self.redis.hget(
                    keys.profile(uploader.decode()), "avatar_media_id") == raw:
                await self.redis.zadd(_expiry(), {media_id: now_ms + self.unsent_ttl_ms})
                continue
            await self.erase(media_id, store)
            erased.append(media_id)
        if erased:
            log.info("erased %d expired media", len(erased))
        return erased
