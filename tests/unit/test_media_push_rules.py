"""Pure rules of media and push: byte ranges, the type allow-list, what a push says."""

from __future__ import annotations

import pytest

from chat.events import Media, MessageAccepted, Origin
from gateway.media import allowed_type, byte_range
from media.urls import media_object
from projections.push import PRIVATE_TITLE, Registration, notification, preview_text


@pytest.mark.parametrize("header, expected", [
    (None, None), ("", None), ("bytes=0-99", (0, 99)), ("bytes=100-", (100, 999)), ("bytes=-10", (990, 999)),
    ("bytes=-5000", (0, 999)), ("bytes=900-5000", (900, 999)), ("bytes=0-1,5-6", None), ("items=0-1", None),
    ("bytes=-", None), ("bytes=0-" + "9" * 5000, (0, 999)), ("bytes=-" + "9" * 5000, (0, 999)),
])
def test_byte_ranges(header, expected):
    assert byte_range(header, 1000) == expected


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=5-4", "bytes=-0", "bytes=-000", "bytes=" + "9" * 5000 + "-"])
def test_unsatisfiable_ranges(header):
    with pytest.raises(ValueError):
        byte_range(header, 1000)


def test_allow_list_families_and_exact_types():
    allowed = ["image/png", "video/*", "application/pdf"]
    assert allowed_type("image/png", allowed) and allowed_type("video/webm", allowed)
    assert not allowed_type("image/svg+xml", allowed) and not allowed_type("text/html", allowed)
    assert not allowed_type("video", allowed)


def test_media_object_names_a_thumbnail_for_images_only():
    assert media_object("m", "image/webp", 3)["thumbnail_url"] == "/v1/media/m/thumbnail"
    assert media_object("m", "video/mp4", 3) == {"media_id": "m", "url": "/v1/media/m", "content_type": "video/mp4",
                                                 "size": 3}


def message(body: str, media: Media | None = None) -> MessageAccepted:
    return MessageAccepted("c1", 7, "m7", "alice", "cm", body, 1000, Origin("gw"), media)


def test_private_pushes_carry_no_content_and_collapse_per_conversation():
    job = notification(message("the secret"), "bob", "phone", Registration("fcm", "t"), "team", private=True)
    assert (job.title, job.body, job.collapse_key, job.attempt) == (PRIVATE_TITLE, None, "c1", 0)
    assert "secret" not in repr(job) and "alice" not in job.title and "team" not in job.title


def test_open_pushes_preview_the_text_or_name_the_media():
    job = notification(message("x" * 500), "bob", "phone", Registration("apns", "t"), "team", private=False)
    # The body is read at send time, never carried on the push topic.
    assert (job.title, job.body, job.preview) == ("alice in team", None, True)
    assert "xxx" not in repr(job)
    assert preview_text("x" * 500, None) == "x" * 200 + "…"
    direct = notification(message("", Media("md", "/v1/media/md", "image/png", 1)), "bob", "p",
                          Registration("webhook", "http://h"), "", private=False)
    assert (direct.title, preview_text("", "image/png")) == ("alice", "[image]")


def test_thumbnails_keep_the_aspect_and_refuse_pixel_bombs():
    import io

    from PIL import Image

    from media.thumbnails import render

    def image(w: int, h: int, fmt: str = "PNG") -> bytes:
        out = io.BytesIO()
        Image.new("RGBA" if fmt == "PNG" else "RGB", (w, h), (10, 20, 30)).save(out, fmt)
        return out.getvalue()
    with Image.open(io.BytesIO(render(image(1000, 250), 320))) as t:
        assert (t.format, t.size) == ("JPEG", (320, 80))
    with Image.open(io.BytesIO(render(image(100, 50, "GIF"), 320))) as t:
        assert t.size == (100, 50)  # never enlarged
    import struct
    import zlib
    ihdr = struct.pack(">IIBBBBB", 10_000, 6_000, 8, 2, 0, 0, 0)  # a header claiming 60 MP, no pixels
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")
    with pytest.raises(ValueError, match="too many pixels"):
        render(bomb, 320)
    with pytest.raises(OSError):
        render(b"not an image", 320)
