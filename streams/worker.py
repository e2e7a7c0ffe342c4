"""``python -m streams.worker``: run one Faust stream worker with the settings from env."""

from __future__ import annotations

import asyncio
import sys

import uvloop

from streams import agents, media_agents, presence_agents, push_agents  # noqa: F401  (registers the agents with the app)
from streams import metrics
from streams.app import app, settings


def faust_loglevel(level: str) -> str:
    """Faust's command line spells WARNING and CRITICAL its own way (and refuses to start otherwise)."""
    level = level.lower()
    return {"warning": "warn", "critical": "crit"}.get(level, level)


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
    app.main()


if __name__ == "__main__":
    main()
