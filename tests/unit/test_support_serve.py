"""``tests.support.serve``: one real aiohttp handler on a loopback port, gone once left."""

import aiohttp
import pytest
from aiohttp import web

from tests.support import serve


async def test_serve_answers_at_its_url_and_stops_when_left_by_an_error():
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text=f"hi {request.query['who']}")

    with pytest.raises(LookupError):
        async with serve(hello, "/hello", scheme="http") as url:
            assert url.startswith("http://127.0.0.1:") and url.endswith("/hello")
            async with aiohttp.ClientSession() as session, session.get(f"{url}?who=me") as response:
                assert (response.status, await response.text()) == (200, "hi me")
            raise LookupError("the test body failed")
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):  # the runner was cleaned up: refused
            await session.get(url)
