"""``python -m streams.worker``: run one Faust stream worker with the settings from env."""

from __future__ import annotations

import asyncio
import sys

import uvloop

from streams import agents, media_agents, presence_agents, profile_agents, push_agents  # noqa: F401  (registers the agents with the app)
from chat.gc_tuning import tune
from streams import metrics
from streams.app import EXIT_AGENT_CRASHED, app, crashes, settings


def faust_loglevel(level: str) -> str:
    """The level for Faust's command line: ours up to INFO, and INFO above that.

    Our ``logging_config`` sets the real level. At WARN and above, Faust's worker adds a
    terminal spinner handler and sets the root logger to DEBUG, so every library's debug
    call built a record for nothing (aiokafka's fetcher: a twentieth of a worker's time)."""
    level = level.lower()
    return level if level in ("debug", "info") else "info"


def main() -> None:
    # The worker command's --with-web default overrides the app's web_enabled=False, and a
    # second worker on the machine would then crash on port 6066: say it on the command line.
    # --quiet: no start-up banner on stdout, so that JSON logs stay one event per line.
    quiet = ["--quiet"] if settings.log_format == "json" else []
    sys.argv = [sys.argv[0], *quiet, "worker", "--loglevel", faust_loglevel(settings.log_level), "--without-web"]
    metrics.serve(settings)
    # uvloop, as the gateway: the default loop's selector and transports were a fifth of a busy
    # worker's time. (Faust's own --loop is read from argv when faust is imported, before this.)
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    tune(settings)
    try:
        app.main()
    finally:
        if crashes:  # stopped by crash_worker: say so to the supervisor
            sys.exit(EXIT_AGENT_CRASHED)


if __name__ == "__main__":
    main()
