"""``python -m gateway``: serve the gateway with the settings from env, on uvloop."""

from __future__ import annotations

import uvloop
from aiohttp import web

from chat.gc_tuning import tune
from chat.logs import configure
from chat.settings import Settings, SettingsError
from gateway.app import create_app


def main() -> None:
    settings = Settings.from_env()
    configure(settings, process="gateway", gateway_id=settings.gateway_id)
    try:
        app = create_app(settings)
    except SettingsError as exc:
        raise SystemExit(f"gateway: refusing to start: {exc}") from None  # exit status 1
    uvloop.install()
    tune(settings)
    web.run_app(app, host=settings.host, port=settings.port, print=None,
                shutdown_timeout=5.0, reuse_port=settings.reuse_port or None)


if __name__ == "__main__":
    main()
