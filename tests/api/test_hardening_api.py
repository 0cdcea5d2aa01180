"""Issue 17, items 1–3 over HTTP: impossible dates answer a French 422 with a stable code
(never a 500), batches answer with offsets, the operator's expiry and its confirmation."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text

from kit.clock import paris_day, utcnow
from pass_.enums import OrganisationKind
from tests.clearing.factories import issue_cheques, make_scheme, make_site, paris, redeem
from tests.factories import make_actor


@pytest.fixture
async def operator(session, app):  # type: ignore[no-untyped-def]
    return await make_actor(session, app, OrganisationKind.operator)


@pytest.mark.parametrize(("method", "path", "body"), [
    ("GET", "/api/v1/redemptions?from=0001-01-01&to=9999-12-31", None),
    ("GET", "/api/v1/redemptions?from=2024-01-01&to=9999-12-31", None),
    ("POST", "/api/v1/clearing/batches", {"cutoff": "0001-01-01"}),
    ("POST", "/api/v1/clearing/batches", {"cutoff": "9999-12-31T23:59:59-14:00"}),
    ("POST", "/api/v1/clearing/batches", {"cutoff": "0001-01-01T00:00:00+00:00"}),
    ("POST", "/api/v1/clearing/expire", {"today": "0001-01-01"}),
    ("POST", "/api/v1/clearing/expire", {"today": "9999-12-31"}),
    ("GET", "/api/v1/clearing/batches/preview?cutoff=0001-01-01", None),
    ("GET", "/api/v1/clearing/expire/preview?today=9999-12-31", None),
])
async def test_an_impossible_date_is_a_french_422_with_a_stable_code(
        client, operator, method: str, path: str, body: Any) -> None:
    answer = await client.request(method, path, headers=operator.headers,
                                  **({"json": body} if body is not None else {}))
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "date_out_of_range"
    assert "1er janvier 2000" in error["message"]


async def test_expiry_over_http_refuses_a_future_day_and_asks_for_confirmation(
        client, session, app, operator) -> None:
    today = paris_day(utcnow())
    tomorrow = await client.post("/api/v1/clearing/expire",
                                 json={"today": (today + timedelta(days=1)).isoformat()},
                                 headers=operator.headers)
    assert tomorrow.status_code == 422
    assert tomorrow.json()["error"]["code"] == "expiry_day_in_future"
    await client.post("/api/v1/clearing/expire", json={"confirm": True},
                      headers=operator.headers)  # what other tests left behind
    scheme = await make_scheme(session, app.state.keyring)
    await issue_cheques(session, scheme, 4)
    await session.commit()

    preview = await client.get("/api/v1/clearing/expire/preview", headers=operator.headers)
    assert preview.status_code == 200
    assert preview.json()["cheques"] == 4 and preview.json()["needs_confirmation"]
    refused = await client.post("/api/v1/clearing/expire", json={}, headers=operator.headers)
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "expiry_confirmation_required"
    assert refused.json()["error"]["details"]["cheques"] == 4
    confirmed = await client.post("/api/v1/clearing/expire", json={"confirm": True},
                                  headers=operator.headers)
    assert confirmed.status_code == 200 and confirmed.json()["expired_cheques"] == 4


async def test_batches_over_http_preview_refuse_empty_and_earlier_and_carry_offsets(
        client, session, app, operator) -> None:
    now = utcnow()
    await client.post("/api/v1/clearing/batches",
                      json={"cutoff": (now - timedelta(minutes=30)).isoformat()},
                      headers=operator.headers)  # whatever other tests left unbatched
    scheme = await make_scheme(session, app.state.keyring)
    site = await make_site(session)
    cheques = await issue_cheques(session, scheme, 5)
    for cheque in cheques:
        await redeem(session, scheme, site, cheque, at=paris(2024, 4, 2))
    await session.commit()
    cutoff = (now - timedelta(minutes=20)).isoformat()

    preview = await client.get("/api/v1/clearing/batches/preview", params={"cutoff": cutoff},
                               headers=operator.headers)
    assert preview.status_code == 200, preview.text
    assert (preview.json()["redemption_count"], preview.json()["gross_cents"]) == (5, 5000)
    closed = await client.post("/api/v1/clearing/batches", json={"cutoff": cutoff},
                               headers=operator.headers)
    assert closed.status_code == 201
    assert closed.json()["cutoff"].endswith(("+00:00", "Z"))
    for batch in (await client.get("/api/v1/clearing/batches",
                                   headers=operator.headers)).json():
        assert batch["cutoff"].endswith(("+00:00", "Z")), batch

    empty = await client.post("/api/v1/clearing/batches",
                              json={"cutoff": (now - timedelta(minutes=10)).isoformat()},
                              headers=operator.headers)
    assert empty.status_code == 409 and empty.json()["error"]["code"] == "batch_empty"
    earlier = await client.post("/api/v1/clearing/batches",
                                json={"cutoff": (now - timedelta(minutes=40)).isoformat()},
                                headers=operator.headers)
    assert earlier.status_code == 422
    assert earlier.json()["error"]["code"] == "cutoff_before_last_batch"

    recorded = await client.post(f"/api/v1/clearing/batches/{closed.json()['id']}/transfers",
                                 json={"sent_on": paris_day(now).isoformat()},
                                 headers=operator.headers)
    assert recorded.status_code == 200, recorded.text
    assert [r["organisation_id"] for r in recorded.json()] == [site.id]
    assert await session.scalar(text(
        "SELECT status FROM statement WHERE batch_id = :b AND organisation_id = :s"),
        {"b": closed.json()["id"], "s": site.id}) == "paid"
