"""``bench.wsclient``: the load generator's minimal WebSocket client, against aiohttp's server."""

import asyncio
import time

from aiohttp import WSMsgType, web

from bench.wsclient import FrameParser, _mask, client_frame, connect
from tests.support import serve


def test_masking_is_its_own_inverse():
    key = b"\x01\x02\x03\x04"
    assert _mask(_mask(b"hello, world", key), key) == b"hello, world"
    assert _mask(b"\x00\x00\x00\x00\x00", key) == b"\x01\x02\x03\x04\x01"


def test_frames_split_anywhere_and_fragments_are_joined():
    stream = (b"\x81\x02hi" + b"\x01\x03abc" + b"\x89\x00" + b"\x80\x02de"  # text, a fragment, a ping, the end
              + b"\x81\x7e\x01\x00" + b"x" * 256)  # a 16-bit length
    parser = FrameParser()
    got = [m for i in range(0, len(stream), 3) for m in parser.feed(stream[i:i + 3])]
    assert got == [(1, b"hi"), (9, b""), (1, b"abcde"), (1, b"x" * 256)]


async def test_talks_to_aiohttps_server_text_ping_and_close():
    received: list[str] = []

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str(f'hello {request.headers["Authorization"]} {request.query["device_id"]}')
        await ws.ping(b"p")
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                received.append(msg.data)
                await ws.send_str("x" * 70_000)  # a 64-bit length
                await ws.close(code=4409, message=b"bye")
        return ws

    frames: list[bytes] = []
    async with serve(handler, "/v1/ws", scheme="ws") as url:
        ws = await connect(f"{url}?device_id=d0", {"Authorization": "Bearer t"},
                           lambda data, t: frames.append(data), time.perf_counter)
        await ws.send_str('{"type":"send"}')
        await asyncio.wait_for(asyncio.shield(ws.done), 5)
    assert frames == [b"hello Bearer t d0", b"x" * 70_000]
    assert received == ['{"type":"send"}'] and ws.close_code == 4409 and ws.closed
    assert len(client_frame(1, b"abc")) == 2 + 4 + 3
