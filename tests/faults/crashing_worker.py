"""``python -m tests.faults.crashing_worker``: the real stream worker, except that its projector
raises on its first batch, an error no retry catches (a bug, as far as the worker can tell).

Used by tests/integration/test_health.py to show that an agent that crashes takes the worker
down (exit code ``EXIT_AGENT_CRASHED``), so that its supervisor restarts it.
"""

from __future__ import annotations

from typing import Any

from streams import agents
from streams.worker import main


async def crash(res: Any, events: list[Any]) -> None:
    raise RuntimeError(f"injected: the projector fails on a batch of {len(events)} events")


agents.project_batch = crash

if __name__ == "__main__":
    main()
