"""``POST /v1/media``, ``GET /v1/media/{id}`` (and its thumbnail), and media in sends.

Upload: the body is streamed to the media store in chunks, counted and hashed on the way
(``media.store.Hashing``), never held whole; past ``CHAT_MEDIA_MAX_BYTES`` it stops with
``413 too_large`` and nothing is kept. Then the metadata goes to Redis and a ``MediaUploaded``
event to the media topic (the thumbnail agent makes thumbnails from it).

Download: the uploader, whoever can read a message that carried the medium (a member of
the conversation, or a former member whose readable history includes it), and, for a user's
current avatar, everyone who shares a conversation with them; anyone else gets
404, as for an unknown id, so nothing leaks. Single byte ranges get ``206`` (video seeking).
Browsers' ``<img>``/``<video>`` cannot send headers, so ``?token=`` is accepted here too.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from typing import AsyncIterator

from aiohttp import web

from chat.errors import BadRequest, NotFound, TooLarge
from chat.events import Media, MediaUploaded, MessageSendRequested
from chat.ids import is_media_id, keyed_id, new_media_id
from gateway.auth import request_user
from gateway.context import GATEWAY, Gateway
from gateway.creation import request_key
from gateway.upload_limits import UploadLimiter
from media.store import Hashing, MediaStore, make_media_store
from media.urls import media_object, media_url, thumbnail_key
from projections.media import MediaInfo, MediaProjection
from projections.profiles import ProfileProjection

log = logging.getLogger(__name__)

routes = web.RouteTableDef()
UPLOAD_CHUNK = 256 * 1024
_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


@dataclasses.dataclass
class MediaService:
    store: MediaStore
    index: MediaProjection
    uploads: UploadLimiter


async def resources(app: web.Application) -> AsyncIterator[None]:
    """Opened after the gateway's own resources (``cleanup_ctx`` order), closed before them."""
    gw = app[GATEWAY]
    store = make_media_store(gw.settings)
    await store.open()
    gw.media = MediaService(store, MediaProjection.from_settings(gw.redis, gw.settings),
                            UploadLimiter(gw.redis, gw.settings))
    yield
    await store.close()


def allowed_type(content_type: str, allowed: list[str]) -> bool:
    family = content_type.split("/", 1)[0] + "/*"
    return "/" in content_type and (content_type in allowed or family in allowed)


@routes.post("/v1/media")
async def upload(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    user_id = request_user(gw.settings, request)
    content_type = request.content_type.lower()
    if not allowed_type(content_type, gw.settings.media_type_list):
        raise BadRequest(f"content type {content_type!r} is not allowed; allowed: {gw.settings.media_types}")
    limit = gw.settings.media_max_bytes
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge(f"media is larger than {limit} bytes")
    key = request_key(request)  # a retry with the same key gets the first upload's answer
    media_id = new_media_id() if key is None else keyed_id("media", user_id, key)
    first = None if key is None else await gw.media.index.get(media_id)
    if first is not None and first.uploader == user_id:
        return web.json_response({**media_object(media_id, first.content_type, first.size),
                                  "sha256": first.sha256}, status=201)
    hashing = await store_upload(request, gw, user_id, media_id)
    size, now = hashing.size, int(time.time() * 1000)
    await gw.media.index.create(MediaInfo(media_id, user_id, content_type, size, hashing.sha256, now))
    await gw.producer.send(MediaUploaded(media_id, user_id, content_type, size, hashing.sha256, now),
                           media_id, topic=gw.settings.media_topic)
    body = {**media_object(media_id, content_type, size), "sha256": hashing.sha256}
    return web.json_response(body, status=201)


async def store_upload(request: web.Request, gw: Gateway, user_id: str, media_id: str) -> Hashing:
    """Stream the body into the store within the user's upload limits (``upload_limits``):
    its bytes are reserved first and given back once the size is known."""
    limit = gw.settings.media_max_bytes
    reservation = await gw.media.uploads.reserve(user_id, request.content_length)
    hashing = Hashing(request.content.iter_chunked(UPLOAD_CHUNK), min(limit, reservation.reserved))
    try:
        size = await gw.media.store.put(media_id, hashing.__aiter__(), request.content_type.lower())
    except TooLarge:
        await gw.media.uploads.settle(reservation, 0)
        if hashing.limit < limit:  # past what was left of the user's bytes, not one upload's limit
            raise await gw.media.uploads.over(reservation) from None
        raise
    except Exception:
        await gw.media.uploads.settle(reservation, 0)
        raise
    await gw.media.uploads.settle(reservation, size)
    if size == 0:
        await gw.media.store.delete(media_id)
        raise BadRequest("the body is empty")
    return hashing


async def readable(gw: Gateway, media_id: str, user_id: str) -> MediaInfo:
    """The medium if ``user_id`` may read it; ``NotFound`` otherwise (unknown reads the same).
    ``BadRequest`` for an id not spelled like one, before any key is built from it (an id
    such as ``<id>:sent`` would otherwise name another key of the projection)."""
    if not is_media_id(media_id):
        raise BadRequest("media_id must be 32 lowercase hex digits")
    info = await gw.media.index.get(media_id)
    if info is None:
        raise NotFound("no such media")
    if info.uploader == user_id:
        return info
    for conversation_id, seq in (await gw.media.index.sent_in(media_id)).items():
        role, former_seq = await gw.conversations.access(conversation_id, user_id)
        if role is not None or (former_seq is not None and former_seq >= seq):
            return info
    if await avatar_readable(gw, info, user_id):
        return info
    raise NotFound("no such media")


async def avatar_readable(gw: Gateway, info: MediaInfo, user_id: str) -> bool:
    """Whether ``info`` is its uploader's avatar now and ``user_id`` shares a conversation with
    them: everyone who does may download it (protocol 1.1)."""
    if await ProfileProjection(gw.redis).avatar(info.uploader) != info.media_id:
        return False
    return info.uploader in await gw.conversations.sharing(user_id, [info.uploader])


async def attach_media(gw: Gateway, command: MessageSendRequested) -> MessageSendRequested:
    """A send naming ``media_id`` carries the medium's metadata to the (pure) sequencer, if the
    sender may read it: their own upload, or media they received (forwarding)."""
    if command.media_id is None:
        return command
    try:
        info = await readable(gw, command.media_id, command.sender_id)
    except (NotFound, BadRequest):  # malformed reads as unknown, as it always did here
        raise BadRequest("unknown media_id", ref=command.client_msg_id) from None
    media = Media(info.media_id, media_url(info.media_id), info.content_type, info.size)
    return dataclasses.replace(command, media=media)


def _at_most(digits: str, cap: int) -> int:
    """``min(int(digits), cap)``, without reading more digits than ``cap`` has (``int`` refuses
    over 4300 digits, and a longer number is past any size anyway)."""
    return cap if len(digits.lstrip("0")) > len(str(cap)) else min(int(digits), cap)


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(first, last)`` of a single ``Range: bytes=`` header, None to send everything.
    ``ValueError`` when it is unsatisfiable: it starts past the end, or asks for the last 0
    bytes (answered 416)."""
    match = _RANGE.match(header.strip()) if header else None
    if match is None:  # no header, several ranges or another unit: the whole thing (RFC 9110)
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes; the last 0 bytes are none (RFC 9110 14.1.1: unsatisfiable)
        suffix = _at_most(last, size)
        if suffix == 0:
            raise ValueError(f"range {header!r} asks for no bytes")
        return size - suffix, size - 1
    start, end = _at_most(first, size), _at_most(last, size - 1) if last else size - 1
    if start >= size or end < start:
        raise ValueError(f"range {header!r} is outside the {size} bytes")
    return start, end


async def serve(request: web.Request, store: MediaStore, key: str, size: int, content_type: str,
                etag: str) -> web.StreamResponse:
    try:
        span = byte_range(request.headers.get("Range"), size)
    except ValueError as exc:
        return web.json_response({"error": {"code": "bad_request", "message": str(exc)}}, status=416,
                                 headers={"Content-Range": f"bytes */{size}"})
    first, last = span if span is not None else (0, size - 1)
    response = web.StreamResponse(status=206 if span is not None else 200, headers={
        "Accept-Ranges": "bytes", "Content-Type": content_type, "ETag": f'"{etag}"',
        "Cache-Control": "private, max-age=86400", "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox"})
    if span is not None:
        response.headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    response.content_length = last - first + 1
    await response.prepare(request)
    if request.method != "HEAD":
        async for chunk in store.read(key, first, last):
            await response.write(chunk)
    await response.write_eof()
    return response


@routes.get("/v1/media/{media_id}")
async def download(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    user_id = request_user(gw.settings, request, allow_query=True)
    info = await readable(gw, request.match_info["media_id"], user_id)
    return await serve(request, gw.media.store, info.media_id, info.size, info.content_type, info.sha256)


@routes.get("/v1/media/{media_id}/thumbnail")
async def thumbnail(request: web.Request) -> web.StreamResponse:
    """The JPEG thumbnail of an image, for those who may read the image; 404 until it is made."""
    gw = request.app[GATEWAY]
    user_id = request_user(gw.settings, request, allow_query=True)
    info = await readable(gw, request.match_info["media_id"], user_id)
    key = thumbnail_key(info.media_id)
    size = await gw.media.store.size(key) if info.thumbnail else None
    if size is None:
        raise NotFound("no thumbnail (yet)")
    return await serve(request, gw.media.store, key, size, "image/jpeg", f"{info.sha256}-thumb")
