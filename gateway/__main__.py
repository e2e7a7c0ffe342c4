"""``python -m gateway``: serve the gateway with the settings from env, on uvloop."""

from __future__ import annotations

import logging

import uvloop
from aiohttp import web

from chat.settings import Settings
from gateway.app import create_app


def main() -> None:
    settings = Settings.from_env()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    uvloop.install()
    web.run_app(create_app(settings), host=settings.host, port=settings.port, print=None,
                shutdown_timeout=5.0)


if __name__ == "__main__":
    main()
