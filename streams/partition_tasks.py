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
