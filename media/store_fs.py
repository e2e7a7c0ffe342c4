"""``MediaStore`` on a local directory: one file per key, written to a temporary name and
renamed when complete, so a reader never sees half a file. File I/O runs in threads."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import AsyncIterator

from chat.errors import BadRequest, NotFound
from media.store import READ_CHUNK


class FilesystemMediaStore:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    async def open(self) -> None:
        await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)

    async def close(self) -> None:
        return None

    def path(self, key: str) -> Path:
        if not key or "/" in key or key.startswith("."):
            raise BadRequest(f"bad media key {key!r}")
        return self.root / key[:2] / key  # 256 subdirectories keep directories small

    async def put(self, key: str, chunks: AsyncIterator[bytes], content_type: str) -> int:
        final = self.path(key)
        await asyncio.to_thread(final.parent.mkdir, parents=True, exist_ok=True)
        partial = final.with_name(f".{final.name}.{uuid.uuid4().hex}.part")
        f = await asyncio.to_thread(open, partial, "wb")
        size = 0
        try:
            async for chunk in chunks:
                await asyncio.to_thread(f.write, chunk)
                size += len(chunk)
            await asyncio.to_thread(f.close)
            await asyncio.to_thread(os.replace, partial, final)
        except BaseException:
            f.close()
            partial.unlink(missing_ok=True)
            raise
        return size

    async def size(self, key: str) -> int | None:
        try:
            return (await asyncio.to_thread(self.path(key).stat)).st_size
        except FileNotFoundError:
            return None

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        try:
            f = await asyncio.to_thread(open, self.path(key), "rb")
        except FileNotFoundError as exc:
            raise NotFound("no such media") from exc
        try:
            await asyncio.to_thread(f.seek, start)
            left = None if end is None else end - start + 1
            while left is None or left > 0:
                chunk = await asyncio.to_thread(f.read, READ_CHUNK if left is None else min(READ_CHUNK, left))
                if not chunk:
                    break
                if left is not None:
                    left -= len(chunk)
                yield chunk
        finally:
            f.close()

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.path(key).unlink, missing_ok=True)
