"""One task per assigned partition that loads its state (the sequencer's recovery, the
presence book): started at assignment, started again when a load failed."""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, TypeVar

T = TypeVar("T")


def succeeded(task: asyncio.Task[T]) -> bool:
    return task.done() and not task.cancelled() and task.exception() is None


def failed(task: asyncio.Task[T]) -> bool:
    return task.done() and (task.cancelled() or task.exception() is not None)


def forget(tasks: dict[int, asyncio.Task[T]], partition: int) -> None:
    """Drop (and cancel) the partition's load task: the next ``ensure`` loads it again."""
    task = tasks.pop(partition, None)
    if task is not None:
        task.cancel()


def ensure(tasks: dict[int, asyncio.Task[T]], partition: int,
           load: Callable[[int], Awaitable[T]]) -> asyncio.Task[T]:
    """The partition's load task; a new one when there is none or the last one failed."""
    task = tasks.get(partition)
    if task is None or failed(task):
        task = tasks[partition] = asyncio.ensure_future(load(partition))
    return task


async def owned(tasks: dict[int, asyncio.Task[T]], partition: int,
                load: Callable[[int], Awaitable[T]]) -> T | None:
    """The partition's loaded state (loaded again if its last load failed); None when the
    partition is not, or no longer, this worker's: ``tasks`` holds a task for every assigned
    partition from its assignment on, and ``forget`` drops it on revocation. A batch read before
    a rebalance can hold events of a partition revoked since: loading it would fence and
    sequence a partition another worker owns."""
    if partition not in tasks:
        return None
    return await unless_revoked(ensure(tasks, partition, load))


async def unless_revoked(task: asyncio.Task[T]) -> T | None:
    """``await task``, or None when the task was cancelled (``forget``: its partition was
    revoked) while the caller itself was not. Awaiting a cancelled task raises CancelledError
    in the awaiter too: the agent that waited for a revoked partition's load then "crashed"
    with it, and Faust restarted the agent without the rest of its batch, which was then never
    handled nor acked (``streams.batching``). Its caller skips the partition's events instead:
    the partition's new owner reads them."""
    try:
        return await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if task.cancelled() and (current is None or not current.cancelling()):
            return None
        raise
