"""The media store: the bytes of uploaded files (and their thumbnails), by key.

This module is the interface (``MediaStore``) and what every backend shares. Backends are
named after it: ``store_fs.py`` (files under a directory, the default on one machine) and
``store_s3.py`` (any S3-compatible service). ``make_media_store(settings)`` picks one.

Uploads are streams: ``put`` takes an async iterator of chunks and never needs the whole file
in memory; a ``put`` that fails (the iterator raised, e.g. the size limit) leaves nothing behind.
Metadata (uploader, type, sha256, where it was sent) lives in Redis (``projections/media.py``).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, AsyncIterator, Protocol

from chat.errors import TooLarge

if TYPE_CHECKING:
    from chat.settings import Settings

READ_CHUNK = 256 * 1024


class MediaStore(Protocol):
    async def open(self) -> None:
        """Connect; create the bucket or directory if it is missing."""

    async def close(self) -> None:
        """Release connections and threads."""

    async def put(self, key: str, chunks: AsyncIterator[bytes], content_type: str) -> int:
        """Store the stream under ``key`` (replacing it); returns the bytes stored. If ``chunks``
        raises, nothing is stored and the exception propagates."""

    async def size(self, key: str) -> int | None:
        """The stored object's size, None if there is none."""

    def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """The bytes ``start..end`` (inclusive; ``end`` None: to the last byte), in chunks.
        Raises ``NotFound`` if there is no such object."""

    async def delete(self, key: str) -> None:
        """Remove an object; no error if it is missing."""


class Hashing:
    """Wraps an upload stream: counts and hashes it (sha256), and raises ``TooLarge`` as soon as
    it goes past ``limit`` bytes, so an oversized upload stops without being read to its end."""

    def __init__(self, chunks: AsyncIterator[bytes], limit: int) -> None:
        self._chunks = chunks
        self.limit = limit
        self.size = 0
        self._sha = hashlib.sha256()

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._chunks:
            self.size += len(chunk)
            if self.size > self.limit:
                raise TooLarge(f"media is larger than {self.limit} bytes")
            self._sha.update(chunk)
            yield chunk


def make_media_store(settings: Settings) -> MediaStore:
    if settings.media_backend == "fs":
        from media.store_fs import FilesystemMediaStore

        return FilesystemMediaStore(settings.resolved_media_dir)
    if settings.media_backend == "s3":
        from media.store_s3 import S3MediaStore

        return S3MediaStore.from_settings(settings)
    raise ValueError(f"CHAT_MEDIA_BACKEND must be 'fs' or 's3', not {settings.media_backend!r}")
