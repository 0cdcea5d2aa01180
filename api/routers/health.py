"""Liveness with a database check, Prometheus metrics, and the cheque-signing public keys."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.metrics import exposition

router = APIRouter(tags=["santé"])
# A database that accepts connections but never answers would otherwise hold the probe for
# asyncpg's 60-second connect timeout; an orchestrator wants "not healthy" well before that.
HEALTH_TIMEOUT_S = 5.0


@router.get("/healthz")
async def healthz(request: Request) -> JSONResponse:
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT_S):
            async with request.app.state.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    except Exception:  # noqa: BLE001 — any database failure means "not healthy"
        return JSONResponse({"status": "ko", "database": "injoignable"}, status_code=503)
    return JSONResponse({"status": "ok", "database": "ok"})


@router.get("/metrics")
async def metrics() -> Response:
    body, content_type = exposition()
    return Response(body, media_type=content_type)


@router.get("/.well-known/jwks.json")
async def jwks(request: Request) -> JSONResponse:
    return JSONResponse(
        request.app.state.keyring.jwks(), headers={"Cache-Control": "public, max-age=300"}
    )
