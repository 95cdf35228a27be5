"""Logging set-up for entry points (the only place handlers are configured).

Two formats: ``text`` for people at a terminal, ``json`` (one object per line) for
log collectors. Fields passed with ``extra={...}`` are kept as structured fields.
Our own code never logs patient names or IDs; pynetdicom's identifier logging is
switched off where the DICOM services start.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any

__all__ = ["JsonFormatter", "configure_logging"]

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        """Format ``record`` as a JSON line."""
        data: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        data.update(_extras(record))
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        extras = _extras(record)
        if extras:
            base += " " + " ".join(f"{k}={v}" for k, v in extras.items())
        return base


def configure_logging(level: str = "INFO", fmt: str = "text", stream: Any = None) -> None:
    """Configure the root logger once for an entry point.

    Parameters
    ----------
    level : str
        Logging level name.
    fmt : {"text", "json"}
        Output format.
    stream : file-like, optional
        Destination (standard error by default).
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Third-party chatter that carries no operational value at INFO.
    for noisy in ("PIL", "urllib3", "httpx", "wsidicom", "opentile", "matplotlib"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    logging.getLogger("pydicom").addFilter(_drop_deprecations)


def _drop_deprecations(record: logging.LogRecord) -> bool:
    """Hide libraries' deprecation notices about their own internals."""
    return "deprecated" not in record.getMessage()
