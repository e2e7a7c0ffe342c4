"""``chat.loop_watch``: the loop's lag as a metric, and the stack that held a stalled loop."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from prometheus_client import CollectorRegistry, Histogram

from chat.loop_watch import LAG_BUCKETS, LoopWatch


def lag_histogram() -> Histogram:
    return Histogram("lag", "test", buckets=LAG_BUCKETS, registry=CollectorRegistry())


def observed(h: Histogram) -> tuple[float, float]:
    """(count, sum) of a histogram's samples."""
    samples = {s.name: s.value for s in h.collect()[0].samples}
    return samples["lag_count"], samples["lag_sum"]


def hold_the_loop(seconds: float) -> None:
    time.sleep(seconds)  # what a blocking call inside a coroutine does to every other task


async def test_beats_record_how_late_the_loop_woke(caplog: pytest.LogCaptureFixture) -> None:
    lag = lag_histogram()
    watch = LoopWatch(lag, stall_s=0.15, interval=0.02)
    task = asyncio.create_task(watch.run())
    with caplog.at_level(logging.WARNING, logger="chat.loop_watch"):
        await asyncio.sleep(0.1)
        count, total = observed(lag)
        assert count >= 2 and total < 0.1  # an idle loop: beats on time
        hold_the_loop(0.4)
        await asyncio.sleep(0.15)  # the beat after the stall, and the watchdog's report of its end
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    count_after, total_after = observed(lag)
    assert total_after - total >= 0.3  # the stall shows in the metric
    held = [r.getMessage() for r in caplog.records if "held for at least" in r.getMessage()]
    assert len(held) == 1 and watch.stalls == 1  # one report per stall
    assert "hold_the_loop" in held[0] and "time.sleep(seconds)" in held[0]  # the code that held it
    ended = [r.getMessage() for r in caplog.records if "stall ended after" in r.getMessage()]
    assert len(ended) == 1
    assert 300 <= int(ended[0].split("after ")[1].split(" ms")[0]) <= 1000


async def test_no_watchdog_when_off_and_no_report_without_a_stall(caplog: pytest.LogCaptureFixture) -> None:
    watch = LoopWatch(lag_histogram(), stall_s=0)
    with caplog.at_level(logging.WARNING, logger="chat.loop_watch"):
        task = asyncio.create_task(watch.run())
        await asyncio.sleep(0.2)
        hold_the_loop(0.3)
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert watch.stalls == 0 and not caplog.records
    on = LoopWatch(lag_histogram(), stall_s=0.2, interval=0.02)
    task = asyncio.create_task(on.run())
    await asyncio.sleep(0.3)  # only short waits: nothing to report
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert on.stalls == 0
