"""Structured JSON logs, one event per step, with every number masked.

Call code logs numbers only through `mask_number`; the `redact` processor is
the net that masks any number-like text that slips into an event anyway.
"""
from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

from bridge.numbering import redact_text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_redact_value(v) for v in value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    # Anything else (a dataclass, a set, an exception) would be rendered with
    # repr() after this processor: render it here so it is redacted too.
    return redact_text(str(value))


def redact(_logger, _method, event_dict: dict) -> dict:
    return {key: _redact_value(value) for key, value in event_dict.items()}


def configure(level: str = "info", stream: TextIO | None = None) -> None:
    """JSON lines on `stream` (stderr by default)."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    structlog.configure(
        processors=[
            # No merge_contextvars: nothing binds context variables (a call's
            # logger is bound once), and it copied the context on every line.
            structlog.processors.format_exc_info,
            redact,
            # Ours, after the net: a timestamp's digit groups sent every line
            # through the date check of redact_text for nothing.
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str):
    return structlog.get_logger(name)
