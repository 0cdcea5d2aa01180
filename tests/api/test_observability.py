"""Liveness with its database check, Prometheus metrics and the request id."""

from __future__ import annotations

import re
import socket
from typing import Any

import httpx

from api.app import create_app
from kit.db import make_engine


def closed_port() -> int:
    """A loopback port nobody listens on (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_healthz_says_ok_when_the_database_answers(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


async def test_healthz_is_503_when_the_database_is_unreachable(settings: Any) -> None:
    engine = make_engine(f"postgresql://passnum@127.0.0.1:{closed_port()}/passnum")
    app = create_app(settings, engine=engine, run_sealer=False)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
                response = await c.get("/healthz")
                metrics = await c.get("/metrics")
    finally:
        await engine.dispose()
    assert response.status_code == 503
    assert response.json() == {"status": "ko", "database": "injoignable"}
    assert metrics.status_code == 200  # metrics need no database


async def test_healthz_is_503_when_the_database_accepts_connections_but_never_answers(
    settings: Any, monkeypatch: Any
) -> None:
    from api.routers import health

    monkeypatch.setattr(health, "HEALTH_TIMEOUT_S", 0.5)  # the real one is 5 s
    with socket.socket() as black_hole:
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen(1)  # the kernel completes the handshake; nobody ever replies
        port = black_hole.getsockname()[1]
        engine = make_engine(f"postgresql://passnum@127.0.0.1:{port}/passnum")
        app = create_app(settings, engine=engine, run_sealer=False)
        try:
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
                async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
                    response = await c.get("/healthz")
        finally:
            await engine.dispose()
    assert response.status_code == 503


async def test_metrics_are_prometheus_text_counting_requests_by_route(
    client: httpx.AsyncClient,
) -> None:
    await client.get("/healthz")
    await client.get("/api/v1/organisations/987654321")  # 401, counted under its template
    await client.get("/une/adresse/inconnue/chemin-unique-du-test")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "# TYPE passnum_http_requests_total counter" in text
    assert re.search(
        r'^passnum_http_requests_total\{method="GET",route="/healthz",status="200"\} [1-9]',
        text,
        re.MULTILINE,
    )
    assert 'route="/api/v1/organisations/{organisation_id}",status="401"' in text
    # Unknown addresses share one label: a scanner cannot blow up the number of series.
    assert 'route="unmatched",status="404"' in text
    # No path value becomes a label (a bare number could also appear inside a timestamp).
    assert 'route="/api/v1/organisations/987654321"' not in text
    assert "chemin-unique-du-test" not in text
    assert "passnum_http_request_seconds_bucket" in text


async def test_the_request_id_sent_is_echoed(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": "scan-42_abc"})
    assert response.headers["x-request-id"] == "scan-42_abc"
    error = await client.get("/nulle-part", headers={"X-Request-ID": "erreur-7"})
    assert error.headers["x-request-id"] == "erreur-7"


async def test_a_request_id_is_made_when_none_is_sent_and_hostile_ones_are_cleaned(
    client: httpx.AsyncClient,
) -> None:
    first = (await client.get("/healthz")).headers["x-request-id"]
    second = (await client.get("/healthz")).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{16}", first) and first != second
    cleaned = await client.get("/healthz", headers={"X-Request-ID": "a b\"<script>;" + "x" * 100})
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", cleaned.headers["x-request-id"])
    assert cleaned.headers["x-request-id"].startswith("abscript")


async def test_security_headers_are_on_every_answer(client: httpx.AsyncClient) -> None:
    for response in (await client.get("/healthz"), await client.get("/nulle-part")):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "same-origin"


async def test_an_unexpected_error_is_a_500_in_the_error_shape_naming_the_request(
    settings: Any, engine: Any
) -> None:
    app = create_app(settings, engine=engine, run_sealer=False)

    async def broken() -> None:
        raise RuntimeError("un bug")

    app.add_api_route("/api/v1/en-panne", broken)  # a route with a bug, for this test only
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            response = await c.get("/api/v1/en-panne", headers={"X-Request-ID": "panne-1"})
    assert response.status_code == 500
    assert response.json() == {
        "error": {
            "code": "internal_error",
            "message": "Une erreur inattendue est survenue. Réessayez ; si elle persiste, "
            "contactez l'opérateur.",
            "details": {"request_id": "panne-1"},
        }
    }
    assert response.headers["x-request-id"] == "panne-1"
    assert "un bug" not in response.text
