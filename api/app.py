"""The FastAPI application: settings, database, keys, middleware, routers and pages.

`create_app()` is used by `passnum serve` (uvicorn factory) and by the tests. Routers are found
in `api/routers/` and `api/web/` (every module with a `router`), so each feature adds its own file.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import pkgutil
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

import structlog
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import errors
from api import logging as api_logging
from api.metrics import LATENCY, REQUESTS
from kit.db import make_engine, make_pool, make_sessionmaker, resolve_url
from kit.settings import Settings, get_settings

log = structlog.get_logger()
HERE = Path(__file__).resolve().parent


class RequestContext:
    """Pure ASGI middleware: request id, access log line, Prometheus metrics, security headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        structlog.contextvars.bind_contextvars(request_id=request_id)
        # Also in the request's state: the handler of unexpected errors runs outside this
        # middleware (in Starlette's ServerErrorMiddleware) and still names the request.
        scope.setdefault("state", {})["request_id"] = request_id
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []), *context_headers(request_id)
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            record_request(scope["method"], path, status, time.perf_counter() - start,
                           request_id=None)
            structlog.contextvars.clear_contextvars()


def request_id_of(scope: Scope) -> str:
    """The client's X-Request-Id (64 safe characters at most), or a new one."""
    return _header(scope, b"x-request-id") or uuid.uuid4().hex[:16]


def context_headers(request_id: str) -> list[tuple[bytes, bytes]]:
    """The headers every answer carries: its request id and the security headers."""
    return [
        (b"x-request-id", request_id.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"same-origin"),
        (b"x-frame-options", b"DENY"),
    ]


def record_request(method: str, path: str, status: int, elapsed: float, *,
                   request_id: str | None) -> None:
    """A request's metrics and access log line (`request_id` when not bound in the context)."""
    REQUESTS.labels(method, path, str(status)).inc()
    LATENCY.labels(method, path).observe(elapsed)
    if not path.startswith("/static"):
        extra = {} if request_id is None else {"request_id": request_id}
        log.info("request", method=method, route=path, status=status,
                 ms=round(elapsed * 1000, 2), **extra)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            text = value.decode("latin-1")[:64]
            return "".join(c for c in text if c.isalnum() or c in "-_") or None
    return None


class FastLane(Protocol):
    """A request's common case answered ahead of the application's whole stack
    (`PassNumApp`): `answer` returns the body of a 201 JSON answer, exactly as the route
    would give it, or None to hand the request, untouched, to the route."""

    method: str
    path: str
    max_body: int

    async def answer(self, app: FastAPI, scope: Scope, body: bytes) -> bytes | None: ...


class PassNumApp(FastAPI):
    """The FastAPI application, with fast lanes in front of its middleware and routing.

    A fast lane (`FastLane`, today only the scanners' `POST /api/v1/redemptions`) answers the
    common case of its route without Starlette's and FastAPI's layers — error and exception
    middleware, body limit, telemetry, routing, exit stacks, dependency injection —, which
    cost a worker more CPU than the redemption's own code. What those layers give every
    answer, it gives too: the request id and security headers, the access log line and the
    metrics (`record_request`). Anything else, and any error inside the lane before it
    answers, hands the same request (its body replayed) to the whole stack, where the route
    decides as it always does: it says why, replays a key, or reports the error."""

    fast_lanes: dict[tuple[str, str], FastLane]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        lane = (
            self.fast_lanes.get((scope["method"], scope["path"]))
            if scope["type"] == "http" else None
        )
        if lane is None:
            await super().__call__(scope, receive, send)
        else:
            await self._fast(lane, scope, receive, send)

    async def _fast(self, lane: FastLane, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        body, more = await _read_body(receive, lane.max_body)
        answer = None
        if not more:
            scope["app"] = self
            try:
                answer = await lane.answer(self, scope, body)
            except Exception:  # the whole stack decides, and reports the error if it recurs
                log.warning("fast_lane_failed", route=lane.path, exc_info=True,
                            request_id=request_id_of(scope))
        if answer is None:
            await super().__call__(scope, _replay(body, more, receive), send)
            return
        request_id = request_id_of(scope)
        await send({
            "type": "http.response.start",
            "status": 201,
            "headers": [
                (b"content-length", str(len(answer)).encode()),
                (b"content-type", b"application/json"),
                *context_headers(request_id),
            ],
        })
        await send({"type": "http.response.body", "body": answer})
        record_request(lane.method, lane.path, 201, time.perf_counter() - start,
                       request_id=request_id)


async def _read_body(receive: Receive, limit: int) -> tuple[bytes, bool]:
    """The request's body up to `limit` bytes; True if more remains (or the client left)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), True
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), False
        if size > limit:
            return b"".join(chunks), True


def _replay(body: bytes, more: bool, receive: Receive) -> Receive:
    """`receive` again from the start: what the lane read, then the rest from the client."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": more}
        return await receive()

    return replay


# Routers tried first: the router matches a request by trying each route in turn, so the
# scanners' endpoints (hundreds of requests a second) come before the rest. Their paths
# overlap no other router's.
HOT_ROUTERS = ("redemptions", "cheques")


def _include_routers(app: FastAPI, package: str) -> None:
    pkg = importlib.import_module(package)
    modules = pkgutil.iter_modules(pkg.__path__)
    for info in sorted(modules, key=lambda m: (m.name not in HOT_ROUTERS, m.name)):
        module = importlib.import_module(f"{package}.{info.name}")
        router = getattr(module, "router", None)
        if router is not None:
            app.include_router(router)


def create_app(
    settings: Settings | None = None,
    *,
    engine: AsyncEngine | None = None,
    database_url: str | None = None,
    run_sealer: bool = True,
) -> FastAPI:
    settings = settings or get_settings()
    api_logging.configure(json=settings.log_json)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from pass_.tokens import Keyring

        nonlocal engine
        owned = engine is None
        if engine is None:
            url = database_url or resolve_url(settings.database_url, settings.data_dir)
            engine = make_engine(url)
        app.state.engine = engine
        app.state.sessionmaker = make_sessionmaker(engine)
        # The redemption's one-statement path runs on plain asyncpg connections (kit.db).
        app.state.hot_pool = await make_pool(engine.url.render_as_string(hide_password=False))
        app.state.keyring = Keyring.load_or_create(settings.keys_dir)
        from pass_.redemption import AtOnceQueue

        app.state.redeem_queue = AtOnceQueue(
            app.state.hot_pool, app.state.keyring, statements=settings.redeem_statements
        )
        # Everything loaded so far (modules, routes, models) lives as long as the process: out
        # of the collector's sight, a full collection walks only what requests left behind
        # instead of pausing a worker for the whole heap (67 ms measured, a tail latency of
        # its own). Garbage is collected first, so none is frozen with the rest.
        gc.collect()
        gc.freeze()
        task: asyncio.Task[Any] | None = None
        if run_sealer and settings.sealer_in_app:
            from ledger.sealer import run_sealer_loop

            task = asyncio.create_task(
                run_sealer_loop(app.state.sessionmaker, interval=settings.sealer_interval)
            )
        rollup_task: asyncio.Task[Any] | None = None
        if run_sealer and settings.rollup_in_app:
            from pass_.reporting import run_rollup_loop

            rollup_task = asyncio.create_task(
                run_rollup_loop(app.state.sessionmaker, interval=settings.rollup_interval)
            )
        try:
            yield
        finally:
            if rollup_task is not None:
                rollup_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await rollup_task
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await app.state.hot_pool.close()
            if owned:
                await engine.dispose()

    app = PassNumApp(
        title="Pass numérique",
        version="0.1.0",
        lifespan=lifespan,
        docs_url="/api/docs",
        openapi_url="/api/openapi.json",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.jwt_secret = settings.secret("jwt_secret")
    errors.install(app)
    from api.routers.redemptions import RedeemLane

    app.fast_lanes = {(lane.method, lane.path): lane for lane in (RedeemLane(),)}
    _include_routers(app, "api.routers")
    with contextlib.suppress(ModuleNotFoundError):
        _include_routers(app, "api.web")
    app.add_middleware(RequestContext)
    return app


def app_factory() -> FastAPI:
    """Entry point for `uvicorn --factory api.app:app_factory`."""
    return create_app()
