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
from typing import Any

import structlog
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import errors
from api import logging as api_logging
from api.metrics import LATENCY, REQUESTS
from kit.db import make_engine, make_sessionmaker, resolve_url
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
        from api.redeem_online import RedeemGroups
        from pass_.tokens import Keyring

        nonlocal engine
        owned = engine is None
        if engine is None:
            url = database_url or resolve_url(settings.database_url, settings.data_dir)
            engine = make_engine(url)
        app.state.engine = engine
        app.state.sessionmaker = make_sessionmaker(engine)
        app.state.keyring = Keyring.load_or_create(settings.keys_dir)
        app.state.redeem_groups = RedeemGroups()  # its Condition belongs to this event loop
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
            if owned:
                await engine.dispose()

    app = FastAPI(
        title="Pass numérique",
        version="0.1.0",
        lifespan=lifespan,
        docs_url="/api/docs",
        openapi_url="/api/openapi.json",
        redoc_url=None,
        # The service exports its own metrics (Prometheus) and JSON logs. FastAPI's native
        # OpenTelemetry, on by default, looked for a configured provider in the environment at
        # every request to find none: 1–2 % of a worker's time under load (py-spy).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.jwt_secret = settings.secret("jwt_secret")
    errors.install(app)
    _include_routers(app, "api.routers")
    with contextlib.suppress(ModuleNotFoundError):
        _include_routers(app, "api.web")
    app.add_middleware(RequestContext)
    return app


def app_factory() -> FastAPI:
    """Entry point for `uvicorn --factory api.app:app_factory`."""
    return create_app()
