"""``MediaStore`` on any S3-compatible service (AWS S3, MinIO, Ceph, s3rver), by configuration.

The client is boto3, its blocking calls run in threads: it is the well-kept reference client,
speaks every S3 dialect's SigV4, and pins nothing of ours (aiobotocore pins exact botocore and
aiohttp ranges, which would fight the gateway's aiohttp). An upload is streamed: a file smaller
than one part is one PUT; a larger one a multipart upload, one part (``media_part_bytes``, at
least S3's 5 MiB) in flight while the next is read, so at most two parts are held in memory.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, AsyncIterator

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from chat.errors import NotFound, OperationalError
from media.store import READ_CHUNK

if TYPE_CHECKING:
    from chat.settings import Settings

MIN_PART = 5 * 1024 * 1024


def _missing(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NoSuchBucket", "NotFound")


class S3MediaStore:
    def __init__(self, bucket: str, *, endpoint: str | None = None, region: str = "us-east-1",
                 access_key: str | None = None, secret_key: str | None = None,
                 part_bytes: int = 8 * 1024 * 1024) -> None:
        self.bucket = bucket
        self.part_bytes = max(MIN_PART, part_bytes)
        config = Config(signature_version="s3v4", s3={"addressing_style": "path"},
                        retries={"max_attempts": 3, "mode": "standard"},
                        # CRC trailers (aws-chunked bodies) are new and not every S3 server speaks them.
                        request_checksum_calculation="when_required",
                        response_checksum_validation="when_required",
                        max_pool_connections=16)
        self.client: Any = boto3.session.Session().client(
            "s3", endpoint_url=endpoint or None, region_name=region, aws_access_key_id=access_key or None,
            aws_secret_access_key=secret_key or None, config=config)

    @classmethod
    def from_settings(cls, s: Settings) -> "S3MediaStore":
        return cls(s.media_s3_bucket, endpoint=s.media_s3_endpoint, region=s.media_s3_region,
                   access_key=s.media_s3_access_key, secret_key=s.media_s3_secret_key, part_bytes=s.media_part_bytes)

    async def _call(self, name: str, **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(getattr(self.client, name), **kwargs)
        except ClientError as exc:
            if _missing(exc):
                raise NotFound("no such media") from exc
            raise OperationalError(f"S3 {name} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise OperationalError(f"S3 {name} failed: {exc}") from exc

    async def open(self) -> None:
        """Creates the bucket if it is missing. Every gateway and worker opens the store, so
        another process may create it between the check and the creation: that is success."""
        try:
            await self._call("head_bucket", Bucket=self.bucket)
        except NotFound:
            try:
                await asyncio.to_thread(self.client.create_bucket, Bucket=self.bucket)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in ("BucketAlreadyExists",
                                                                      "BucketAlreadyOwnedByYou"):
                    raise OperationalError(f"S3 create_bucket failed: {exc}") from exc
            except BotoCoreError as exc:
                raise OperationalError(f"S3 create_bucket failed: {exc}") from exc

    async def close(self) -> None:
        await asyncio.to_thread(self.client.close)

    async def put(self, key: str, chunks: AsyncIterator[bytes], content_type: str) -> int:
        buffer = bytearray()
        iterator = chunks.__aiter__()
        async for chunk in iterator:
            buffer += chunk
            if len(buffer) >= self.part_bytes:
                return await self._multipart(key, iterator, content_type, bytes(buffer))
        await self._call("put_object", Bucket=self.bucket, Key=key, Body=bytes(buffer), ContentType=content_type)
        return len(buffer)

    async def _multipart(self, key: str, rest: AsyncIterator[bytes], content_type: str, first: bytes) -> int:
        upload = await self._call("create_multipart_upload", Bucket=self.bucket, Key=key, ContentType=content_type)
        upload_id = upload["UploadId"]
        parts: list[dict[str, Any]] = []
        in_flight: asyncio.Task[None] | None = None
        number, size, buffer = 0, 0, bytearray()

        async def send(n: int, body: bytes) -> None:
            answer = await self._call("upload_part", Bucket=self.bucket, Key=key, UploadId=upload_id,
                                      PartNumber=n, Body=body)
            parts.append({"PartNumber": n, "ETag": answer["ETag"]})

        try:
            async for chunk in _prepend(first, rest):
                buffer += chunk
                if len(buffer) >= self.part_bytes:
                    if in_flight is not None:
                        await in_flight
                    number += 1
                    size += len(buffer)
                    in_flight, buffer = asyncio.ensure_future(send(number, bytes(buffer))), bytearray()
            if in_flight is not None:
                await in_flight
                in_flight = None
            if buffer:
                size += len(buffer)
                await send(number + 1, bytes(buffer))
            parts.sort(key=lambda p: p["PartNumber"])
            await self._call("complete_multipart_upload", Bucket=self.bucket, Key=key, UploadId=upload_id,
                             MultipartUpload={"Parts": parts})
        except BaseException:
            if in_flight is not None:
                in_flight.cancel()
            await asyncio.shield(self._abort(key, upload_id))
            raise
        return size

    async def _abort(self, key: str, upload_id: str) -> None:
        try:
            await self._call("abort_multipart_upload", Bucket=self.bucket, Key=key, UploadId=upload_id)
        except Exception:  # best effort: a bucket lifecycle rule removes abandoned parts anyway
            pass

    async def size(self, key: str) -> int | None:
        try:
            return int((await self._call("head_object", Bucket=self.bucket, Key=key))["ContentLength"])
        except NotFound:
            return None

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        span = f"bytes={start}-{'' if end is None else end}"
        body = (await self._call("get_object", Bucket=self.bucket, Key=key, Range=span))["Body"]
        try:
            while chunk := await asyncio.to_thread(body.read, READ_CHUNK):
                yield chunk
        finally:
            body.close()

    async def delete(self, key: str) -> None:
        await self._call("delete_object", Bucket=self.bucket, Key=key)


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first
    async for chunk in rest:
        yield chunk
