"""A localstripe server for the test suite, and a webhook receiver to watch what it sends.

localstripe runs as a subprocess of the suite, on a loopback port the kernel picks. It is not
started with its own `localstripe --port N` command, because that command listens on every
interface, needs a port chosen in advance (racy), and reads and rewrites
/tmp/localstripe.pickle on every request, a file shared by every run on the machine. A
three-line launcher instead binds 127.0.0.1:0, prints the port, and turns the pickle off.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import IO, Any

_LAUNCHER = """
import socket
from aiohttp import web
import localstripe.resources
localstripe.resources.Store.dump_to_disk = lambda self: None  # no shared /tmp pickle
from localstripe.server import app
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen(128)
print(sock.getsockname()[1], flush=True)
web.run_app(app, sock=sock, print=None, access_log=None, handle_signals=True)
"""


@contextmanager
def running_localstripe(*, start_timeout_s: float = 30.0) -> Iterator[str]:
    """Start localstripe, wait until it answers, yield its base URL, stop it."""
    # stderr goes to a file: a pipe nobody reads would block the server once full.
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [sys.executable, "-c", _LAUNCHER],
            stdout=subprocess.PIPE, stderr=log, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            deadline = time.monotonic() + start_timeout_s
            port = _read_port(process, deadline, log)
            url = f"http://127.0.0.1:{port}"
            _wait_until_answering(process, url, deadline)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
            if process.stdout:
                process.stdout.close()


def _read_port(process: subprocess.Popen[str], deadline: float, log: IO[bytes]) -> int:
    assert process.stdout is not None
    stdout = process.stdout
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(max(0.0, deadline - time.monotonic()))
    if not line or not line[0].strip().isdigit():
        process.kill()
        process.wait(timeout=10)
        log.seek(0)
        raise RuntimeError(f"localstripe did not start: {log.read()[-2000:].decode()}")
    return int(line[0])


def _wait_until_answering(process: subprocess.Popen[str], url: str, deadline: float) -> None:
    """Poll until localstripe answers HTTP (an unauthenticated call gets a 401: it is up)."""
    delay = 0.01
    while True:
        try:
            urllib.request.urlopen(f"{url}/v1/balance", timeout=2)
            return
        except urllib.error.HTTPError:
            return
        except OSError as exc:
            if process.poll() is not None:
                raise RuntimeError("localstripe exited during start-up") from exc
            if time.monotonic() > deadline:
                raise TimeoutError("localstripe did not answer in time") from exc
        time.sleep(delay)  # a poll interval, not a wait for the outcome
        delay = min(delay * 2, 0.2)


@dataclass(frozen=True)
class ReceivedWebhook:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def signature(self) -> str | None:
        return self.headers.get("stripe-signature")

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver:
    """An HTTP server on a free loopback port recording every POST it gets."""

    def __init__(self) -> None:
        self.received: list[ReceivedWebhook] = []
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the stdlib's naming)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                with receiver._changed:
                    receiver.received.append(ReceivedWebhook(
                        self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    receiver._changed.notify_all()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/webhooks/stripe"

    def wait_for(self, predicate: Callable[[ReceivedWebhook], bool], *,
                 timeout_s: float = 15.0) -> ReceivedWebhook:
        """The first received webhook matching `predicate`, waiting for it up to the deadline."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                for hook in self.received:
                    if predicate(hook):
                        return hook
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [h.json().get("type") for h in self.received]
                    raise TimeoutError(f"no matching webhook within {timeout_s} s; got {seen}")
                self._changed.wait(left)

    async def wait_for_async(self, predicate: Callable[[ReceivedWebhook], bool], *,
                             timeout_s: float = 15.0) -> ReceivedWebhook:
        """`wait_for` without blocking the event loop."""
        return await asyncio.to_thread(self.wait_for, predicate, timeout_s=timeout_s)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> WebhookReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
