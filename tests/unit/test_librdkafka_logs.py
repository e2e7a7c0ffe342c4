"""librdkafka's own log lines reach Python's logging (so the JSON log format), not raw stderr."""

from __future__ import annotations

import asyncio
import logging

import pytest

from chat.errors import ChatError
from chat.kafka import AsyncProducer
from infra.services import free_port


async def test_the_producers_library_lines_go_through_logging(caplog: pytest.LogCaptureFixture,
                                                            capfd: pytest.CaptureFixture[str]) -> None:
    producer = AsyncProducer(f"127.0.0.1:{free_port()}", **{"message.timeout.ms": 1500})  # nobody listens there
    with caplog.at_level(logging.INFO, logger="librdkafka"):
        with pytest.raises(ChatError):
            await producer.send("t", b"x")
        await asyncio.to_thread(producer.close, 2)
    lines = [r for r in caplog.records if r.name == "librdkafka"]
    assert lines and any("Connection refused" in r.getMessage() for r in lines)
    assert "Connection refused" not in capfd.readouterr().err  # librdkafka printed nothing itself
