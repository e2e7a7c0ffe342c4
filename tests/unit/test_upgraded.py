"""What an upgraded WebSocket lets go of (gateway/upgraded.py), on a real aiohttp server and
client: the HTTP parser, request queue, sent headers, query parses and mask-bit source are no
longer held per socket, and the socket still carries frames both ways, heartbeats (ping and
pong) and the close handshake, with and without permessage-deflate."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from gateway import upgraded
from gateway.upgraded import shed
from tests.support import Handler, serve

HEARTBEAT_S = 1.0  # pings every second; a pong is due within half of it


def echo(seen: list[tuple[web.Request, web.WebSocketResponse]]) -> Handler:
    """A handler that sheds the upgraded socket's HTTP state and echoes text upper-cased."""

    async def handler(request: web.Request) -> web.WebSocketResponse:
        assert request.query["token"] == "t"  # parsed (and cached) before the upgrade, as auth does
        ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S)
        await ws.prepare(request)
        shed(request, ws)
        seen.append((request, ws))
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                await ws.send_str(msg.data.upper())
        return ws

    return handler


async def read(ws: aiohttp.ClientWebSocketResponse, inbox: "asyncio.Queue[str]") -> None:
    async for msg in ws:
        inbox.put_nowait(msg.data)


@pytest.mark.parametrize("compress", [0, 15], ids=["plain", "deflate"])
async def test_upgraded_socket_holds_no_http_state_and_still_works(compress):
    seen: list[tuple[web.Request, web.WebSocketResponse]] = []
    async with serve(echo(seen)) as url:
        url += "?token=t"
        async with aiohttp.ClientSession() as session:
            sockets = [await session.ws_connect(url, compress=compress, autoping=True) for _ in range(3)]
            for i, ws in enumerate(sockets):
                await ws.send_str(f"hi {i}")
                assert (await asyncio.wait_for(ws.receive(), 10)).data == f"HI {i}"
            protocols = [request.protocol for request, _ in seen]
            assert all(p._parser is None for p in protocols)
            assert all(p._messages is upgraded._NO_REQUESTS for p in protocols)
            assert all(ws._headers is upgraded._SENT_HEADERS for _, ws in seen)
            assert all(ws._writer.get_random_bits is upgraded._MASK_BITS for _, ws in seen)
            assert all("query" not in request._cache and "query" not in request.rel_url._cache
                       for request, _ in seen)
            assert len(upgraded._SENT_HEADERS) == 0 and len(upgraded._NO_REQUESTS) == 0
            # Heartbeats pass: the server's pings are answered (a client pongs while it
            # reads), and nothing closes.
            inboxes = [asyncio.Queue() for _ in sockets]
            readers = [asyncio.create_task(read(ws, inbox)) for ws, inbox in zip(sockets, inboxes)]
            await asyncio.sleep(3 * HEARTBEAT_S)
            for i, (ws, inbox) in enumerate(zip(sockets, inboxes)):
                await ws.send_str(f"still {i}")
                assert (await asyncio.wait_for(inbox.get(), 10)) == f"STILL {i}"
            assert not any(ws.closed for ws in sockets) and not any(ws.closed for _, ws in seen)
            for ws in sockets:
                await ws.close()
                assert ws.close_code == aiohttp.WSCloseCode.OK
            await asyncio.wait_for(asyncio.gather(*readers), 10)


async def test_heartbeat_still_closes_a_silent_client():
    """A client that never answers pings is still closed by the server's heartbeat."""
    seen: list[tuple[web.Request, web.WebSocketResponse]] = []
    async with serve(echo(seen)) as url:
        url += "?token=t"
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(url, autoping=False)
            msg = await asyncio.wait_for(ws.receive(), 10)
            while msg.type == aiohttp.WSMsgType.PING:  # not answered
                msg = await asyncio.wait_for(ws.receive(), 10)
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
            assert seen[0][1].closed
