"""Media through the running system: upload, download and who may, media in messages and
history, byte ranges, thumbnails; on the filesystem backend and on a real S3 server (s3rver)."""

from __future__ import annotations

import hashlib
import io
import os

import pytest
from PIL import Image

from infra.services import S3_CREDENTIALS
from tests.client import Client, sign_in_users
from tests.support import System

MiB = 1024 * 1024
LIMIT = 3 * MiB


@pytest.fixture(scope="module")
def system(stack, tmp_path_factory):
    system = System(stack, tmp_path_factory.mktemp("e2e-media"), CHAT_MEDIA_MAX_BYTES=str(LIMIT))
    system.start_worker()
    system.start_gateway()
    yield system
    system.stop()


@pytest.fixture(scope="module")
def s3_system(stack, s3, tmp_path_factory):
    system = System(stack, tmp_path_factory.mktemp("e2e-media-s3"), CHAT_MEDIA_BACKEND="s3",
                    CHAT_MEDIA_S3_ENDPOINT=s3.endpoint, CHAT_MEDIA_S3_BUCKET="chat-media-e2e",
                    CHAT_MEDIA_S3_ACCESS_KEY=S3_CREDENTIALS, CHAT_MEDIA_S3_SECRET_KEY=S3_CREDENTIALS,
                    CHAT_MEDIA_PART_BYTES=str(5 * MiB))
    system.start_worker()
    system.start_gateway()
    yield system
    system.stop()


def png(width: int = 800, height: int = 600) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 90)).save(out, "PNG")
    return out.getvalue()


async def upload(client: Client, data: bytes | object, content_type: str) -> tuple[int, dict]:
    async with client.session.post(f"{client.base_url}/v1/media", data=data,
                                   headers={**client.headers, "Content-Type": content_type}) as r:
        return r.status, await r.json()


async def fetch(client: Client, path: str, **headers: str) -> tuple[int, bytes, dict]:
    async with client.session.get(f"{client.base_url}{path}", headers={**client.headers, **headers}) as r:
        return r.status, await r.read(), dict(r.headers)


async def test_upload_send_download_and_thumbnail(system, session):
    alice, bob, carol = await sign_in_users(session, system.url(), "alice", "bob", "carol")
    image = png()
    status, media = await upload(alice, image, "image/png")
    assert status == 201, media
    media_id = media["media_id"]
    assert media == {"media_id": media_id, "url": f"/v1/media/{media_id}", "content_type": "image/png",
                     "size": len(image), "sha256": hashlib.sha256(image).hexdigest(),
                     "thumbnail_url": f"/v1/media/{media_id}/thumbnail"}
    status, body, headers = await fetch(alice, media["url"])
    assert status == 200 and body == image and headers["Content-Type"] == "image/png"
    for stranger in (bob, carol):  # nobody else until it is sent to them
        assert (await fetch(stranger, media["url"]))[0] == 404

    cid = (await alice.create_group("pics", [bob.user_id]))["conversation_id"]
    b1 = await bob.device("b1")
    a1 = await alice.device("a1")
    await a1.send({"type": "send", "conversation_id": cid, "client_msg_id": "p1", "body": "", "media_id": media_id})
    (ack,) = await a1.wait_for("ack", lambda f: f["client_msg_id"] == "p1")
    (frame,) = await b1.wait_for("message", lambda f: f["message"]["client_msg_id"] == "p1")
    expected = {k: media[k] for k in ("media_id", "url", "content_type", "size", "thumbnail_url")}
    assert frame["message"]["media"] == expected and frame["message"]["seq"] == ack["seq"]
    status, history = await bob.call("GET", f"/v1/conversations/{cid}/messages")
    assert history["messages"][-1]["media"] == expected
    status, body, _ = await fetch(bob, media["url"])  # a member now: may read it
    assert status == 200 and body == image
    async with session.get(f"{system.url()}{media['url']}?token={bob.token}") as r:  # as an <img> would
        assert r.status == 200 and await r.read() == image
    assert (await fetch(carol, media["url"]))[0] == 404  # still not carol

    async def thumbnail_ready() -> bool:
        return (await fetch(bob, media["thumbnail_url"]))[0] == 200
    await eventually_async(thumbnail_ready, 20, "the thumbnail")
    status, thumb, headers = await fetch(bob, media["thumbnail_url"])
    assert headers["Content-Type"] == "image/jpeg"
    with Image.open(io.BytesIO(thumb)) as t:
        assert t.format == "JPEG" and t.size == (320, 240)
    assert (await fetch(carol, media["thumbnail_url"]))[0] == 404
    await a1.close()
    await b1.close()


async def eventually_async(check, timeout: float, what: str) -> None:
    import asyncio
    import time
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"not {what} after {timeout}s"
        await asyncio.sleep(0.2)


async def test_sends_with_media_they_may_not_read_are_refused(system, session):
    alice, bob = await sign_in_users(session, system.url(), "alice", "bob")
    cid = (await alice.create_group("g", [bob.user_id]))["conversation_id"]
    _, bobs = await upload(bob, b"bob's notes", "text/plain")
    a1 = await alice.device("a1")
    for cmid, media_id in (("u1", "no-such-media"), ("u2", bobs["media_id"])):
        await a1.send({"type": "send", "conversation_id": cid, "client_msg_id": cmid, "body": "x", "media_id": media_id})
        (error,) = await a1.wait_for("error", lambda f, c=cmid: f.get("ref") == c)
        assert (error["code"], error["message"]) == ("bad_request", "unknown media_id")
    # Over HTTP, with bob's own media: accepted; then alice may forward what she received.
    status, ack = await bob.call("POST", f"/v1/conversations/{cid}/messages",
                                 json={"client_msg_id": "h1", "body": "see", "media_id": bobs["media_id"]})
    assert status == 202 and ack["seq"] == 1
    status, ack = await alice.call("POST", f"/v1/conversations/{cid}/messages",
                                   json={"client_msg_id": "h2", "body": "", "media_id": bobs["media_id"]})
    assert status == 202 and ack["seq"] == 2
    await a1.close()


async def test_type_allow_list_and_size_limit(system, session):
    (alice,) = await sign_in_users(session, system.url(), "alice")
    media_dir = system.base_dir / "data" / "media"
    files_before = sorted(p for p in media_dir.rglob("*") if p.is_file())
    status, body = await upload(alice, b"<script>", "text/html")
    assert status == 400 and body["error"]["code"] == "bad_request"
    status, body = await upload(alice, os.urandom(LIMIT + 1), "video/mp4")  # Content-Length says it
    assert status == 413 and body["error"]["code"] == "too_large"

    async def chunked():  # no Content-Length: stopped while streaming
        for _ in range(LIMIT // (256 * 1024) + 4):
            yield os.urandom(256 * 1024)
    try:
        status, body = await upload(alice, chunked(), "video/mp4")
        assert status == 413 and body["error"]["code"] == "too_large"
    except Exception as exc:  # the server may close before the client has written everything
        assert "Connection" in type(exc).__name__ or "Payload" in type(exc).__name__, exc
    assert sorted(p for p in media_dir.rglob("*") if p.is_file()) == files_before  # nothing kept
    status, body = await upload(alice, b"", "text/plain")
    assert status == 400
    status, ok = await upload(alice, os.urandom(LIMIT), "video/mp4")  # exactly the limit is fine
    assert status == 201 and ok["size"] == LIMIT and "thumbnail_url" not in ok


async def check_ranges(client: Client, data: bytes, content_type: str) -> None:
    status, media = await upload(client, data, content_type)
    assert status == 201 and media["size"] == len(data)
    url, size = media["url"], len(data)
    status, body, headers = await fetch(client, url)
    assert status == 200 and hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
    assert headers["Accept-Ranges"] == "bytes"
    status, body, headers = await fetch(client, url, Range="bytes=100-199")
    assert status == 206 and body == data[100:200] and headers["Content-Range"] == f"bytes 100-199/{size}"
    status, body, headers = await fetch(client, url, Range="bytes=-10")
    assert status == 206 and body == data[-10:] and headers["Content-Range"] == f"bytes {size - 10}-{size - 1}/{size}"
    status, body, headers = await fetch(client, url, Range=f"bytes={size - 5}-")
    assert status == 206 and body == data[-5:]
    status, _, headers = await fetch(client, url, Range=f"bytes={size}-")
    assert status == 416 and headers["Content-Range"] == f"bytes */{size}"


async def test_range_requests_for_video(system, session):
    (alice,) = await sign_in_users(session, system.url(), "alice")
    await check_ranges(alice, os.urandom(MiB + 7), "video/mp4")


async def test_s3_backend_streams_uploads_serves_ranges_and_thumbnails(s3_system, s3, session):
    alice, bob = await sign_in_users(session, s3_system.url(), "alice", "bob")
    await check_ranges(alice, os.urandom(11 * MiB + 3), "video/mp4")  # a multipart upload of 3 parts
    status, media = await upload(alice, png(640, 640), "image/png")
    assert status == 201

    async def thumbnail_ready() -> bool:
        return (await fetch(alice, media["thumbnail_url"]))[0] == 200
    await eventually_async(thumbnail_ready, 20, "the thumbnail")
    # The objects are in the S3 server's bucket, not on the gateway's disk.
    import boto3
    client = boto3.client("s3", endpoint_url=s3.endpoint, region_name="us-east-1",
                          aws_access_key_id=S3_CREDENTIALS, aws_secret_access_key=S3_CREDENTIALS)
    keys = {o["Key"] for o in client.list_objects_v2(Bucket="chat-media-e2e")["Contents"]}
    assert {media["media_id"], media["media_id"] + ".thumb"} <= keys
    assert not (s3_system.base_dir / "data" / "media").exists()
    assert (await fetch(bob, media["url"]))[0] == 404


async def test_former_members_keep_the_media_sent_while_they_belonged(system, session):
    alice, bob = await sign_in_users(session, system.url(), "alice", "bob")
    cid = (await alice.create_group("g", [bob.user_id]))["conversation_id"]
    urls = []
    for name in ("before", "after"):
        _, media = await upload(alice, name.encode(), "text/plain")
        urls.append(media["url"])
        if name == "after":
            status, _ = await alice.call("DELETE", f"/v1/conversations/{cid}/members/{bob.user_id}")
            assert status == 204
        status, _ = await alice.call("POST", f"/v1/conversations/{cid}/messages",
                                     json={"client_msg_id": name, "body": "", "media_id": media["media_id"]})
        assert status == 202
    assert (await fetch(bob, urls[0]))[:2] == (200, b"before")  # like history: what was sent while a member
    assert (await fetch(bob, urls[1]))[0] == 404
    assert (await fetch(alice, urls[1]))[:2] == (200, b"after")
