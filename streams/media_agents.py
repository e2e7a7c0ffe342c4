"""The thumbnail agent: for each ``MediaUploaded`` image on the media topic, a JPEG thumbnail
(``media/thumbnails.py``), made off the message pipeline and off the upload's request."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from chat.events import MediaUploaded
from media.store import MediaStore, make_media_store
from media.thumbnails import Thumbnailer
from projections.media import MediaProjection
from streams.agents import resources
from streams.app import app, settings
from streams.topics import media_topic

log = logging.getLogger(__name__)

_thumbnailer: Thumbnailer | None = None
_lock = asyncio.Lock()


async def thumbnailer() -> Thumbnailer:
    global _thumbnailer
    async with _lock:
        if _thumbnailer is None:
            store: MediaStore = make_media_store(settings)
            await store.open()
            res = await resources.ready()
            _thumbnailer = Thumbnailer(store, MediaProjection(res.redis), settings.thumbnail_px)
    return _thumbnailer


@app.agent(media_topic)
async def thumbnail(stream: Any) -> None:
    maker = await thumbnailer()
    async for event in stream.events():
        uploaded = event.value.event
        if not isinstance(uploaded, MediaUploaded):
            continue
        try:
            await maker.make(uploaded)
        except Exception:  # the store or Redis unreachable: no thumbnail for this one, go on
            log.exception("thumbnail of %s failed", uploaded.media_id)


@app.on_before_shutdown.connect
async def close_store(sender: Any, **kwargs: Any) -> None:
    if _thumbnailer is not None:
        await _thumbnailer.store.close()  # Redis is the shared resources', closed with them
