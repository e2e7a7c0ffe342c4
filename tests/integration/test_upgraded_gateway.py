"""The real gateway app (in this process, on the real broker and Redis) lets go of a socket's
HTTP upgrade state once the socket is upgraded (gateway/upgraded.py, called by gateway/ws.py):
what an idle socket holds is what bench.idle measures, so a handler that stopped calling it
would bring back about 2.4 KiB per idle socket (bench/RESULTS.md, "Idle connections")."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

from gateway import upgraded
from gateway.app import create_app
from gateway.context import GATEWAY
from infra.services import free_port
from tests.support import System


async def test_an_upgraded_gateway_socket_holds_no_http_state(stack, tmp_path):
    system = System(stack, tmp_path, CHAT_GATEWAY_ID="gw-upgraded", CHAT_LOG_LEVEL="WARNING")
    app = create_app(system.settings)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{url}/v1/dev/token", json={"user_id": "idle-u"}) as r:
                token = (await r.json())["token"]
            async with session.ws_connect(f"{url.replace('http', 'ws', 1)}/v1/ws?device_id=d1&token={token}") as ws:
                hello = await asyncio.wait_for(ws.receive(), 30)
                assert '"hello"' in hello.data
                (conn,) = app[GATEWAY].registry.by_user["idle-u"]["d1"]
                protocol = conn.ws._req.protocol
                assert protocol._parser is None and protocol._messages is upgraded._NO_REQUESTS
                assert conn.ws._headers is upgraded._SENT_HEADERS
                assert conn.ws._writer.get_random_bits is upgraded._MASK_BITS
                assert "query" not in conn.ws._req._cache
                await ws.send_str('{"type":"nonsense"}')  # the socket still answers
                reply = await asyncio.wait_for(ws.receive(), 30)
                assert '"error"' in reply.data
    finally:
        await runner.cleanup()
