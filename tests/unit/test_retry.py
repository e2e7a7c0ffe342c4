"""streams/retry.py: a batch is written again until it goes through; steps run together."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from chat.errors import OperationalError
from streams.retry import together, until_written


async def test_together_returns_results_in_order():
    async def after(delay: float, value: int) -> int:
        await asyncio.sleep(delay)
        return value

    assert await together(after(0.02, 1), after(0.0, 2), after(0.01, 3)) == [1, 2, 3]


async def test_together_raises_the_first_failure_itself_and_cancels_the_rest():
    cancelled = asyncio.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def fails() -> None:
        await asyncio.sleep(0.01)
        raise RedisConnectionError("Redis went away")

    with pytest.raises(RedisConnectionError, match="went away"):
        await asyncio.wait_for(together(slow(), fails()), 5)
    assert cancelled.is_set()


async def test_until_written_retries_a_transient_failure_of_together():
    attempts = 0

    async def step() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise RedisConnectionError("not yet")
        return "written"

    assert await until_written(lambda: together(step()), "test batch") == ["written"]
    assert attempts == 3


async def test_until_written_lets_a_programming_error_through():
    async def step() -> None:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        await until_written(lambda: together(step()), "test batch")


async def test_a_stopping_worker_gives_a_failing_write_up():
    """Retrying after the stores closed could never succeed and held a SIGTERM until SIGKILL."""
    from streams.retry import Stopping

    calls = 0

    async def closed_store() -> None:
        nonlocal calls
        calls += 1
        raise OperationalError("timeline store is not open")

    Stopping.is_set = True
    try:
        with pytest.raises(asyncio.CancelledError):
            await until_written(closed_store, "projecting events")
    finally:
        Stopping.is_set = False
    assert calls == 1
