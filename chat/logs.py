"""Process logging, configured once at start-up: one JSON object per line (or plain text).

``configure(settings, process=...)`` is called by the gateway, the CLI and (through
``logging_config``, which Faust's worker hands to ``logging.config.dictConfig``) the stream
worker. Fields a caller knows go in ``extra=``: ``log.info("joined", extra={"user_id": u})``.
Only the names in ``CONTEXT_FIELDS`` are written, so a message body passed by mistake in
``extra`` never reaches the log; messages themselves must not contain bodies either.
"""

from __future__ import annotations

import logging
import logging.config
import re
from datetime import datetime, timezone
from typing import Any

import orjson

from chat.settings import Settings

CONTEXT_FIELDS = ("conversation_id", "user_id", "device_id", "gateway_id", "worker_id", "topic",
                  "partition", "offset", "code", "projection", "events", "seconds")


# Bearer tokens in a query string (WebSocket URLs allow them) must not reach access logs.
_TOKEN = re.compile(r"(token=)[^&\s\"]+")


def redact(text: str) -> str:
    return _TOKEN.sub(r"\1<redacted>", text)


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", <context fields>, "exc"}``, one line per record
    (aiohttp's access log included, its query tokens redacted)."""

    def __init__(self, static: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.static = {k: v for k, v in (static or {}).items() if v}

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
            **self.static,
        }
        for name in CONTEXT_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def logging_config(settings: Settings, *, process: str, **static: Any) -> dict[str, Any]:
    """A ``dictConfig`` for this process: stderr, ``CHAT_LOG_FORMAT`` json (default) or text."""
    if settings.log_format == "text":
        formatter: dict[str, Any] = {"format": TEXT_FORMAT}
    else:
        formatter = {"()": JsonFormatter, "static": {"process": process, **static}}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"chat": formatter},
        "handlers": {"chat": {"class": "logging.StreamHandler", "formatter": "chat",
                              "stream": "ext://sys.stderr"}},
        "root": {"level": settings.log_level.upper(), "handlers": ["chat"]},
    }


def configure(settings: Settings, *, process: str, **static: Any) -> None:
    logging.config.dictConfig(logging_config(settings, process=process, **static))
