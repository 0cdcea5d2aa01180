"""Issue 17, item 6: uvicorn's, the standard library's and the app's lines are all one JSON
format, with the request id — in a process configured as `passnum serve` configures its own
(api.logging.configure, then uvicorn with log_config=None)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import logging, structlog, uvicorn
from api import logging as api_logging

api_logging.configure(json=True)
uvicorn.Config(app=lambda *a: None, log_config=None, log_level="info").configure_logging()
structlog.contextvars.bind_contextvars(request_id="req-42")
logging.getLogger("uvicorn.error").info("Started server process [%d]", 1234)
logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d',
                                         "127.0.0.1:5000", "GET", "/healthz", "1.1", 200)
try:
    1 / 0
except ZeroDivisionError:
    logging.getLogger("asyncio").exception("Task exception was never retrieved")
structlog.get_logger().info("app_event", figure=3)
import warnings
warnings.warn("old API", DeprecationWarning, stacklevel=1)
structlog.contextvars.clear_contextvars()
logging.getLogger("uvicorn.error").warning("Shutting down")
"""


def test_uvicorn_stdlib_and_app_lines_are_one_json_format_with_the_request_id() -> None:
    done = subprocess.run([sys.executable, "-W", "always", "-c", SCRIPT], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False,
                          env={"PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    events = []
    for line in lines:
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"a log line is not JSON: {line!r}") from None
    by_event = {e["event"]: e for e in events}
    assert set(by_event) == {
        "Started server process [1234]", '127.0.0.1:5000 - "GET /healthz HTTP/1.1" 200',
        "Task exception was never retrieved", "app_event", "Shutting down"} | {
        e for e in by_event if "DeprecationWarning: old API" in e}
    assert any("DeprecationWarning: old API" in e for e in by_event)
    for event in events:
        assert {"event", "level", "timestamp"} <= set(event), event
    for name in ("Started server process [1234]", "Task exception was never retrieved",
                 "app_event"):
        assert by_event[name]["request_id"] == "req-42"
    assert "request_id" not in by_event["Shutting down"]
    assert by_event["Started server process [1234]"]["logger"] == "uvicorn.error"
    assert "ZeroDivisionError" in by_event["Task exception was never retrieved"]["exception"]
