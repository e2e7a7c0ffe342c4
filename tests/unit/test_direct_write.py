"""The gateway's write path (gateway/connection.py, gateway/outbound.py) on a real aiohttp
server and client: frames queued in one turn of the loop go to the transport in one write,
encoded here, with no writer task; a socket with permessage-deflate takes aiohttp's own path.
Either way the device reads every frame, in order, intact."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from gateway.connection import Connection
from gateway.outbound import text_frames
from tests.support import Handler, serve

FRAMES = [b'{"n":1}', b'{"n":2,"pad":"' + b"x" * 200 + b'"}', b'{"n":3,"pad":"' + b"y" * 70_000 + b'"}', b'{"n":4}']


def writer(handler_seen: list[Connection]) -> Handler:
    """A handler that queues ``FRAMES`` on a ``Connection`` in one turn of the loop."""

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        conn = Connection(ws, "u", "d", transport=request.transport)
        for frame in FRAMES:
            conn.replay(frame)
        assert conn.writer is None  # nothing is written, and no task made, before the turn ends
        handler_seen.append(conn)
        await asyncio.sleep(0)
        async for _ in ws:
            pass
        return ws

    return handler


@pytest.mark.parametrize("compress", [0, 15], ids=["plain", "deflate"])
async def test_every_frame_arrives_in_order(compress, monkeypatch):
    import gateway.connection

    tasks: list[object] = []
    real = asyncio.create_task
    monkeypatch.setattr(gateway.connection.asyncio, "create_task",
                        lambda coro, **kw: (tasks.append(coro) if coro.__qualname__ == "Connection._write" else None)
                        or real(coro, **kw))
    seen: list[Connection] = []
    async with serve(writer(seen)) as url:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(url, compress=compress, max_msg_size=0) as ws:
                got = [await asyncio.wait_for(ws.receive(), 10) for _ in FRAMES]
                assert [m.type for m in got] == [aiohttp.WSMsgType.TEXT] * len(FRAMES)
                assert [m.data.encode() for m in got] == FRAMES
                conn = seen[0]
                if compress:
                    assert conn.ws._writer.compress and len(tasks) == 1  # aiohttp's path, one writer task
                else:
                    assert tasks == [] and conn.outbox == () and conn.queued == 0


def test_frame_headers_follow_rfc_6455_lengths():
    assert text_frames([b"a" * 125]) == b"\x81\x7d" + b"a" * 125
    assert text_frames([b"a" * 126])[:4] == b"\x81\x7e\x00\x7e"
    assert text_frames([b"a" * 65536])[:10] == b"\x81\x7f" + (65536).to_bytes(8, "big")
    assert text_frames([b"x", b"yz"]) == b"\x81\x01x\x81\x02yz"
