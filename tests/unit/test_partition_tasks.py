"""``streams.partition_tasks``: a partition's load task, forgotten when the partition is revoked."""

from __future__ import annotations

import asyncio

import pytest

from streams import partition_tasks


async def test_a_load_cancelled_by_its_revocation_gives_none_to_its_waiter():
    tasks: dict[int, asyncio.Task[str]] = {}
    task = partition_tasks.ensure(tasks, 3, lambda p: asyncio.sleep(10, f"state of {p}"))
    waiter = asyncio.ensure_future(partition_tasks.unless_revoked(task))
    await asyncio.sleep(0)
    partition_tasks.forget(tasks, 3)  # the partition is revoked while it loads
    assert await waiter is None
    assert 3 not in tasks


async def test_a_waiter_cancelled_itself_is_cancelled():
    tasks: dict[int, asyncio.Task[str]] = {}
    task = partition_tasks.ensure(tasks, 3, lambda p: asyncio.sleep(10, "state"))
    waiter = asyncio.ensure_future(partition_tasks.unless_revoked(task))
    await asyncio.sleep(0)
    waiter.cancel()  # the agent stops: that is not a revocation
    with pytest.raises(asyncio.CancelledError):
        await waiter
    task.cancel()


async def test_a_loaded_partition_gives_its_state_and_a_failed_load_raises():
    tasks: dict[int, asyncio.Task[str]] = {}
    assert await partition_tasks.unless_revoked(partition_tasks.ensure(tasks, 1, lambda p: asyncio.sleep(0, "ok"))) == "ok"

    async def broken(partition: int) -> str:
        raise ConnectionError("store away")

    with pytest.raises(ConnectionError):
        await partition_tasks.unless_revoked(partition_tasks.ensure(tasks, 2, broken))


async def test_only_a_partition_with_a_task_is_loaded():
    tasks: dict[int, asyncio.Task[str]] = {}
    loads: list[int] = []

    async def load(partition: int) -> str:
        loads.append(partition)
        return f"state of {partition}"

    partition_tasks.ensure(tasks, 1, load)  # assigned
    assert await partition_tasks.owned(tasks, 1, load) == "state of 1"
    assert await partition_tasks.owned(tasks, 2, load) is None  # never assigned, or revoked
    partition_tasks.forget(tasks, 1)
    assert await partition_tasks.owned(tasks, 1, load) is None
    assert loads == [1]
