"""Every line the server writes as one JSON object, for ``server.log_format = "json"``.

Log pipelines (Loki, Elasticsearch, Cloud Logging) parse a container's output line by
line: uvicorn's start-up lines, tether's warnings and its "serving on" line in plain text
between JSON access lines would each be a parse error or a line without fields.
"""

from __future__ import annotations

import json
import logging
import logging.config
import sys
from datetime import UTC, datetime
from typing import Any

_active = False  # set once the server's lines are JSON: its last error line is one too


def active() -> bool:
    return _active


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def json_line(level: str, logger: str, message: str, **fields: Any) -> str:
    """One log line as a JSON object: time, level, logger and message first."""
    line = {"time": now(), "level": level, "logger": logger, "message": message, **fields}
    return json.dumps(line, separators=(",", ":"), default=str)


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = {}
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        return json_line(record.levelname.lower(), record.name, record.getMessage(), **fields)


def log_as_json_lines() -> None:
    """uvicorn's loggers and tether's, each line a JSON object on stderr. The access log
    keeps its own handler, whose lines are JSON already."""
    global _active
    _active = True
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": sys.stderr}
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"json": {"()": JsonLines}},
            "handlers": {"stderr": handler},
            # uvicorn's level follows --log-level; tether's warnings and errors, as in text.
            "loggers": {
                name: {"handlers": ["stderr"], "level": level, "propagate": False}
                for name, level in (("uvicorn", "INFO"), ("tether", "WARNING"))
            },
            # Any other library's warnings (asyncio, httpx) as JSON lines too.
            "root": {"handlers": ["stderr"], "level": "WARNING"},
        }
    )
