"""A Faust worker with the stream worker's transport whose agent hands batch acks to futures
(``Batch.held_by``), told what to do by each record's phase: ``hold`` batches wait for a
``release`` file in DIR, ``fail`` batches are held by a future that fails, ``plain`` batches
are acked after the loop body. It writes ``<phase>.done`` in DIR once it has every record of
a phase (``hold`` once it is holding them).

    python -m tests.integration.faust_holder BOOTSTRAP TOPIC GROUP DIR COUNTS

COUNTS: records per phase, ``hold,fail,plain``.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import faust

from streams import transport
from streams.batching import take_batches


class App(faust.App):
    def _new_transport(self) -> Any:
        return transport.Transport(self.conf.broker_consumer, self)


async def released(where: Path) -> None:
    while not (where / "release").exists():
        await asyncio.sleep(0.05)


def main(bootstrap: str, topic: str, group: str, where: Path, counts: dict[str, int]) -> None:
    app = App(group, broker=f"kafka://{bootstrap}", web_enabled=False, consumer_auto_offset_reset="earliest",
              datadir=str(where / "faust"), broker_commit_interval=0.2)
    source = app.topic(topic, key_type=bytes, key_serializer="raw", value_serializer="raw", internal=False)
    seen: Counter[str] = Counter()
    release: list[asyncio.Future[None]] = []

    @app.agent(source)
    async def holder(stream: Any) -> None:
        async for batch in take_batches(stream, 50, 0.005):
            phases = {e.value.decode().split("-")[0] for e in batch}
            assert len(phases) == 1, f"a batch across phases: {phases}"  # each phase is sent after the last is done
            (phase,) = phases
            seen[phase] += len(batch)
            if phase == "hold":
                if not release:
                    release.append(asyncio.ensure_future(released(where)))
                batch.held_by(release[0])
            elif phase == "fail":
                failed = asyncio.get_running_loop().create_future()
                failed.set_exception(RuntimeError("injected: this batch's deliveries failed"))
                batch.held_by(failed)
            if seen[phase] == counts[phase]:
                (where / f"{phase}.done").touch()

    faust.Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    hold, fail, plain = map(int, sys.argv[5].split(","))
    main(sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4]), {"hold": hold, "fail": fail, "plain": plain})
