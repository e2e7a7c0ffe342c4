"""A Faust worker with the stream worker's transport that reads ``count`` raw records of one
topic through ``take_batches`` with a tiny stream buffer (so record hand-overs wait for room),
then writes what it read, in order, and how many hand-overs had to wait, to ``out`` as JSON.

    python -m tests.integration.faust_reader BOOTSTRAP TOPIC COUNT OUT DATADIR
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from typing import Any

import faust

from streams import transport
from streams.batching import take_batches

waited = 0
_resume = transport._resume


def _counting_resume(coro: Any, yielded: Any) -> Any:
    global waited
    waited += 1
    return _resume(coro, yielded)


transport._resume = _counting_resume


class App(faust.App):
    def _new_transport(self) -> Any:
        return transport.Transport(self.conf.broker_consumer, self)


def main(bootstrap: str, topic: str, count: int, out: str, datadir: str) -> None:
    app = App(f"reader-{uuid.uuid4().hex[:8]}", broker=f"kafka://{bootstrap}", web_enabled=False,
              consumer_auto_offset_reset="earliest", datadir=datadir, stream_buffer_maxsize=4)
    source = app.topic(topic, key_type=bytes, key_serializer="raw", value_serializer="raw", internal=False)
    read: list[list[Any]] = []

    @app.agent(source)
    async def reader(stream: Any) -> None:
        async for batch in take_batches(stream, 50, 0.005):
            read.extend([e.message.partition, e.value.decode()] for e in batch)
            await asyncio.sleep(0.002)  # a slow agent: the buffer fills behind it
            if len(read) >= count:
                with open(out, "w") as f:
                    json.dump({"read": read, "waited": waited}, f)
                os._exit(0)

    faust.Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
