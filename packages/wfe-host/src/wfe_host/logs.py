"""Logging set-up for the ``wfe`` commands: a level, text or JSON lines, workflow context.

Every record gets the workflow and step it belongs to (:mod:`wfe_core.log_context`); the
text format appends them in brackets, the JSON format has them as keys. A program that
configured logging itself (its own handler on the root logger, or a test runner's) is left
alone: only the context filter is added then.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Final

from wfe_core.log_context import FIELDS, LogContextFilter

__all__ = ["FORMATS", "LEVELS", "JsonFormatter", "TextFormatter", "configure_logging"]

#: Accepted by ``--log-level`` / ``WFE_LOG_LEVEL``.
LEVELS: Final = ("debug", "info", "warning", "error", "critical")
#: Accepted by ``--log-format`` / ``WFE_LOG_FORMAT``.
FORMATS: Final = ("text", "json")

# Marks the handler this module installed, so a second call replaces it instead of adding one.
_OURS: Final = "_wfe_cli_handler"


def _context(record: logging.LogRecord) -> dict[str, str]:
    return {name: value for name in FIELDS if (value := getattr(record, name, None))}


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message [workflow_id=... step_name=...]``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        context = _context(record)
        if not context:
            return text
        first, newline, rest = text.partition("\n")  # keep a traceback below the bracket
        pairs = " ".join(f"{key}={value}" for key, value in context.items())
        return f"{first} [{pairs}]{newline}{rest}"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time`` (ISO 8601 UTC), ``level``, ``logger``,
    ``message``, the workflow context keys that are set, and ``exception`` (the formatted
    traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **_context(record),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, default=str, ensure_ascii=False)


def configure_logging(level: str, fmt: str = "text") -> None:
    """Log records at ``level`` and above to stderr in ``fmt`` (``text`` or ``json``).

    Called again (a command with its own default level), it replaces what it installed.
    """
    if level.lower() not in LEVELS:
        raise ValueError(f"unknown log level {level!r}; use one of {', '.join(LEVELS)}")
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r}; use one of {', '.join(FORMATS)}")
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, _OURS, False)]
    if root.handlers and not ours:
        # Configured by whoever embeds the command (or a test runner): add the ids only.
        for handler in root.handlers:
            if not any(isinstance(f, LogContextFilter) for f in handler.filters):
                handler.addFilter(LogContextFilter())
        return
    for handler in ours:
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    setattr(handler, _OURS, True)
    handler.addFilter(LogContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())
