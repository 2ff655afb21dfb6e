"""Logging set-up: one JSON object per line, carrying the request id when there is one.

Payloads, phone numbers and secrets are never passed to a logger; this module
only shapes what callers log.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import time
from typing import Any

import orjson

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)

# Attributes every LogRecord has, and uvicorn's duplicate of the message with colours.
_IGNORED_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "color_message",
}
# Chatty per-request loggers of our HTTP clients; their failures reach us as exceptions.
_QUIET_LOGGERS = ("httpx", "httpx2", "httpcore")


class JsonFormatter(logging.Formatter):
    """Formats a record as JSON; extra= fields become top-level keys."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id is not None:
            entry["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _IGNORED_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def _formatter(json: bool) -> logging.Formatter:
    if json:
        formatter: logging.Formatter = JsonFormatter()
        formatter.converter = time.gmtime
        return formatter
    return logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")


def logging_config(level: str = "INFO", json: bool = True) -> dict[str, Any]:
    """The same set-up as a dictConfig, for runtimes that configure logging themselves (Faust)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": {"()": _formatter, "json": json}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        "loggers": {name: {"level": "WARNING"} for name in _QUIET_LOGGERS},
    }


def configure_logging(level: str = "INFO", json: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_formatter(json))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
