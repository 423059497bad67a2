"""Log lines as text or as JSON objects (log.format), for `docker compose logs` and collectors."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from app.config import LogConfig

# What a LogRecord holds by itself; anything else was passed as `extra`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the
    record's extra fields (the access line's request_id, status...)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(), "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


HANDLER = "userdir-stderr"


def configure(settings: LogConfig) -> None:
    """The root logger's stderr handler, in the configured format; a second
    call replaces the handler the first one installed, and only that one
    (another's handler, a test harness's or an embedding program's, stays)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if settings.format == "json" else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.set_name(HANDLER)
    root = logging.getLogger()
    for old in list(root.handlers):
        if old.get_name() == HANDLER:
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.level.upper())
