"""Logging: one JSON event per line, with the request id, no personal data — for the app's
structlog events and for every standard-library logger (uvicorn's, asyncio's, SQLAlchemy's…),
which go through the same processors (structlog.stdlib.ProcessorFormatter)."""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson
import structlog


def configure(json: bool = True, level: int = logging.INFO) -> None:
    processors: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    if json:
        # orjson writes the line as bytes in a microsecond; the standard library's encoder took
        # a tenth of a redemption's CPU (an access line is written for every request).
        processors.append(structlog.processors.JSONRenderer(serializer=orjson.dumps))
        factory: Any = structlog.BytesLoggerFactory(file=sys.stderr.buffer)
    else:
        processors.append(structlog.dev.ConsoleRenderer(colors=False))
        factory = structlog.PrintLoggerFactory(file=sys.stderr)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )
    configure_stdlib(json=json, level=level)


# uvicorn's own loggers: without handlers of their own they reach the root's JSON handler.
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


def configure_stdlib(json: bool = True, level: int = logging.INFO) -> None:
    """The root logger writes JSON lines like the app's (same keys: event, level, timestamp,
    logger, request_id when a request is under way); uvicorn's loggers propagate to it.
    `passnum serve` runs uvicorn with `log_config=None`, so uvicorn installs no text format."""
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json
        else structlog.dev.ConsoleRenderer(colors=False))
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    handler.set_name("passnum-json")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "passnum-json"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)  # warnings (deprecations…) as JSON lines too, not raw text
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
