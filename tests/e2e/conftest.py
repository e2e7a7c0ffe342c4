from __future__ import annotations

import aiohttp
import pytest_asyncio


@pytest_asyncio.fixture(loop_scope="session")
async def session():
    """One HTTP client session per test, for the protocol clients of tests/client.py."""
    async with aiohttp.ClientSession() as s:
        yield s
