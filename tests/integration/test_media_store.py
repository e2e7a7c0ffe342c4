"""The media store contract: one suite, run on the filesystem and on a real S3-compatible
server (s3rver, started by the ``s3`` fixture). Uploads are streams of chunks."""

from __future__ import annotations

import hashlib
import os
import uuid
from typing import AsyncIterator

import pytest
import pytest_asyncio

from chat.errors import NotFound, TooLarge
from infra.services import S3_CREDENTIALS
from media.store import Hashing, MediaStore
from media.store_fs import FilesystemMediaStore
from media.store_s3 import MIN_PART, S3MediaStore

MiB = 1024 * 1024


async def stream(data: bytes, chunk: int = 64 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), chunk):
        yield data[i:i + chunk]


async def read_all(store: MediaStore, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([c async for c in store.read(key, start, end)])


def key() -> str:
    return uuid.uuid4().hex


class MediaStoreContract:
    async def test_small_object_round_trip(self, store: MediaStore) -> None:
        k, data = key(), b"hello media"
        assert await store.put(k, stream(data), "text/plain") == len(data)
        assert await store.size(k) == len(data)
        assert await read_all(store, k) == data

    async def test_large_object_streams_in_parts_and_reads_ranges(self, store: MediaStore) -> None:
        k, data = key(), os.urandom(2 * MIN_PART + 12345)  # three multipart parts on S3
        assert await store.put(k, stream(data), "video/mp4") == len(data)
        assert await store.size(k) == len(data)
        got = await read_all(store, k)
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
        assert await read_all(store, k, 100, 199) == data[100:200]
        assert await read_all(store, k, MIN_PART - 5, MIN_PART + 4) == data[MIN_PART - 5:MIN_PART + 5]
        assert await read_all(store, k, len(data) - 10) == data[-10:]

    async def test_replacing_and_deleting(self, store: MediaStore) -> None:
        k = key()
        await store.put(k, stream(b"one"), "text/plain")
        await store.put(k, stream(b"two!"), "text/plain")
        assert await read_all(store, k) == b"two!"
        await store.delete(k)
        await store.delete(k)  # twice is fine
        assert await store.size(k) is None

    async def test_missing_object(self, store: MediaStore) -> None:
        assert await store.size(key()) is None
        with pytest.raises(NotFound):
            await read_all(store, key())

    @pytest.mark.parametrize("size", [100_000, 2 * MIN_PART], ids=["one-part", "multipart"])
    async def test_a_stream_that_fails_stores_nothing(self, store: MediaStore, size: int) -> None:
        k = key()
        limited = Hashing(stream(os.urandom(size)), limit=size - 1)
        with pytest.raises(TooLarge):
            await store.put(k, limited.__aiter__(), "application/octet-stream")
        assert limited.size <= size and await store.size(k) is None

    async def test_hashing_counts_and_hashes_the_stream(self, store: MediaStore) -> None:
        data = os.urandom(300_000)
        hashing = Hashing(stream(data), limit=len(data))
        k = key()
        assert await store.put(k, hashing.__aiter__(), "image/png") == len(data)
        assert (hashing.size, hashing.sha256) == (len(data), hashlib.sha256(data).hexdigest())


class TestFilesystemMediaStore(MediaStoreContract):
    @pytest_asyncio.fixture(loop_scope="session")
    async def store(self, tmp_path):
        store = FilesystemMediaStore(tmp_path / "media")
        await store.open()
        yield store
        await store.close()

    async def test_no_partial_files_are_left(self, store: FilesystemMediaStore) -> None:
        k = key()
        with pytest.raises(TooLarge):
            await store.put(k, Hashing(stream(b"x" * 1000), 10).__aiter__(), "text/plain")
        assert [p for p in store.root.rglob("*") if p.is_file()] == []


class TestS3MediaStore(MediaStoreContract):
    @pytest_asyncio.fixture(loop_scope="session")
    async def store(self, s3):
        store = S3MediaStore(f"media-{uuid.uuid4().hex[:8]}", endpoint=s3.endpoint, access_key=S3_CREDENTIALS,
                             secret_key=S3_CREDENTIALS, part_bytes=MIN_PART)
        await store.open()  # creates the bucket
        yield store
        await store.close()
