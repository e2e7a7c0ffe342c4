"""Retrying a batch's writes while a store, Redis or the broker is away.

An agent that raised would be restarted by Faust's supervisor with the next events, and the
batch it was writing would never reach its projections (found by tests/faults: a Redis
restart under load left acked messages out of history). So an agent retries the same
batch until it is written, with capped backoff. Every projection is idempotent, so writing a
batch again is safe; deliveries sent again are dropped by clients by ``(conversation_id, seq)``.
"""

from __future__ import annotations

import asyncio
import logging
import functools
from typing import Any, Awaitable, Callable, TypeVar

from redis.exceptions import RedisError

from chat.errors import ChatError

log = logging.getLogger(__name__)

T = TypeVar("T")
FIRST_DELAY_S, MAX_DELAY_S = 0.05, 2.0
TRANSIENT = (RedisError, ChatError, OSError, asyncio.TimeoutError)


class Stopping:
    """Set once the worker is shutting down, before its stores and producer are closed."""
    is_set = False


async def until_written(step: Callable[[], Awaitable[T]], what: str) -> T:
    """``await step()`` until it does not raise a transient error; other errors propagate.

    Once the worker is stopping, a failed step is given up (``CancelledError``, as for any
    work a stopping agent leaves): its stores are closing, so retrying could never succeed and
    would hold the shutdown until the process is killed. The batch was not committed, so the
    worker that takes the partition over writes it."""
    delay = FIRST_DELAY_S
    while True:
        try:
            return await step()
        except TRANSIENT as exc:
            if Stopping.is_set:
                raise asyncio.CancelledError(f"{what}: the worker is stopping") from exc
            log.warning("%s failed (%s: %s); retrying in %.2f s", what, type(exc).__name__, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_DELAY_S)


async def together(*steps: Awaitable[Any]) -> list[Any]:
    """Run steps concurrently and return their results in order. The first to fail cancels the
    others and is raised as itself (not in an ExceptionGroup), so ``until_written`` sees it."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(step) for step in steps]  # type: ignore[arg-type]
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return [task.result() for task in tasks]


def survives(what: str) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
    """For a Faust timer: a transient error is logged and the timer runs again next time.
    (A timer that raises crashes the whole worker; found by tests/faults under a Redis restart.)"""
    def wrap(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(fn)
        async def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except TRANSIENT as exc:
                log.warning("%s failed (%s: %s); again on the next tick", what, type(exc).__name__, exc)
                return None
        return run
    return wrap
