"""Thumbnails of images, made with Pillow by the thumbnail agent (``streams/media_agents.py``).

A thumbnail is a JPEG at most ``thumbnail_px`` on its longer side, stored next to the original
(``<id>.thumb``). Making it again changes nothing (the projection says it exists). An image of
more than 50 megapixels gets no thumbnail (checked from its header, before decoding).
"""

from __future__ import annotations

import asyncio
import io
import logging

from PIL import Image, ImageOps

from chat.events import MediaUploaded
from media.store import MediaStore
from media.urls import THUMBNAIL_TYPES, thumbnail_key
from projections.media import MediaProjection

log = logging.getLogger(__name__)

MAX_SOURCE_PIXELS = 50_000_000  # a 50 MP photo decodes to 150 MB of RGB


def render(data: bytes, px: int) -> bytes:
    """The JPEG thumbnail of an image (first frame of an animation), orientation applied.
    ``ValueError`` for an image of more than ``MAX_SOURCE_PIXELS`` (read from its header, before
    decoding): a small file can decode to gigabytes."""
    with Image.open(io.BytesIO(data)) as image:
        if image.width * image.height > MAX_SOURCE_PIXELS:
            raise ValueError(f"{image.width}x{image.height} is too many pixels to thumbnail")
        image.draft("RGB", (px, px))  # JPEG: decode at a reduced scale, much faster
        image = ImageOps.exif_transpose(image)
        image.thumbnail((px, px))
        if image.mode not in ("RGB", "L"):
            image = image.convert("RGBA")
            background = Image.new("RGB", image.size, (255, 255, 255))
            background.paste(image, mask=image.getchannel("A"))
            image = background
        out = io.BytesIO()
        image.save(out, "JPEG", quality=80, optimize=True)
        return out.getvalue()


class Thumbnailer:
    def __init__(self, store: MediaStore, media: MediaProjection, px: int) -> None:
        self.store = store
        self.media = media
        self.px = px

    async def make(self, event: MediaUploaded) -> bool:
        """Make the thumbnail of an uploaded image; False if it is not an image Pillow reads."""
        if event.content_type not in THUMBNAIL_TYPES:
            return False
        info = await self.media.get(event.media_id)
        if info is not None and info.thumbnail:
            return True
        data = b"".join([chunk async for chunk in self.store.read(event.media_id)])
        try:
            thumb = await asyncio.to_thread(render, data, self.px)
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            log.warning("no thumbnail for %s (%s): %s", event.media_id, event.content_type, exc)
            return False

        async def one() -> object:
            yield thumb

        await self.store.put(thumbnail_key(event.media_id), one(), "image/jpeg")
        await self.media.mark_thumbnail(event.media_id, len(thumb))
        return True
