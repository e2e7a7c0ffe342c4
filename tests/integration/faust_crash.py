"""A Faust worker with the stream worker's transport whose agent reads a topic through
``take_batches`` and raises on a batch holding the record ``crash``; the worker then stops as
the stream worker does when an agent crashes (``streams.app.crash_worker``: SIGTERM to itself).

    python -m tests.integration.faust_crash BOOTSTRAP TOPIC APP_ID DATADIR
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import faust

from streams import transport
from streams.batching import take_batches


class App(faust.App):
    def _new_transport(self) -> Any:
        return transport.Transport(self.conf.broker_consumer, self)

    async def _on_agent_error(self, agent: Any, exc: BaseException) -> None:
        await super()._on_agent_error(agent, exc)
        os.kill(os.getpid(), signal.SIGTERM)


def main(bootstrap: str, topic: str, app_id: str, datadir: str) -> None:
    app = App(app_id, broker=f"kafka://{bootstrap}", web_enabled=False, consumer_auto_offset_reset="earliest",
              datadir=datadir, broker_commit_interval=0.2, topic_disable_leader=True,
              stream_wait_empty=False)  # as the stream worker: a stop does not wait for unacked events
    source = app.topic(topic, key_type=bytes, key_serializer="raw", value_serializer="raw", internal=False)

    @app.agent(source)
    async def reader(stream: Any) -> None:
        async for batch in take_batches(stream, 50, 0.005):
            if any(e.value == b"crash" for e in batch):
                raise RuntimeError("a batch this agent cannot handle")

    faust.Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main(*sys.argv[1:5])
