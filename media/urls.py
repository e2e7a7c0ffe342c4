"""Where media and thumbnails are served, and which media get a thumbnail.

Decision: ``thumbnail_url`` is deterministic, ``/v1/media/{id}/thumbnail``, given for every image
type Pillow thumbnails; it answers 404 until the thumbnail agent has made it (a second or so
after the upload), then the JPEG. Message frames and history carry it without a new event.
"""

from __future__ import annotations

THUMBNAIL_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
MEDIA_PREFIX = "/v1/media/"


def media_url(media_id: str) -> str:
    return f"{MEDIA_PREFIX}{media_id}"


def thumbnail_key(media_id: str) -> str:
    return f"{media_id}.thumb"


def thumbnail_url(media_id: str, content_type: str) -> str | None:
    return f"{MEDIA_PREFIX}{media_id}/thumbnail" if content_type in THUMBNAIL_TYPES else None


def media_object(media_id: str, content_type: str, size: int, url: str | None = None) -> dict[str, object]:
    """The protocol's media object, plus ``thumbnail_url`` (an addition) for images."""
    obj: dict[str, object] = {"media_id": media_id, "url": url or media_url(media_id),
                              "content_type": content_type, "size": size}
    thumb = thumbnail_url(media_id, content_type)
    if thumb is not None:
        obj["thumbnail_url"] = thumb
    return obj
