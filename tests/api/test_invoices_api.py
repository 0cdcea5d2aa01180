"""Invoices over HTTP (issue 14): the contract's bodies, every role, the Factur-X download,
the bank-statement upload and the participation PATCH."""

from __future__ import annotations

import io
from typing import Any

import facturx
import httpx
from sqlalchemy import text

from tests.api import test_clearing_api
from tests.api.test_clearing_api import World
from tests.clearing.test_bank import camt054

CONTRACT = {"id", "number", "type_code", "financer_id", "programme_id", "batch_id",
            "issue_date", "due_date", "total_cents", "payment_reference", "status",
            "engagement_number", "service_code"}

world = test_clearing_api.world  # the clearing API tests' scene, shared


async def test_invoices_are_listed_per_role(client: httpx.AsyncClient, world: World) -> None:
    mine = await client.get("/api/v1/invoices", headers=world.financer.headers)
    assert mine.status_code == 200
    assert mine.json() and {i["financer_id"] for i in mine.json()} == {world.financer.org.id}
    assert set(mine.json()[0]) == CONTRACT
    every = await client.get(f"/api/v1/invoices?batch_id={world.batch_id}",
                             headers=world.operator.headers)
    assert len(every.json()) == 2  # the State and the Département
    other = await client.get(f"/api/v1/invoices?financer_id={world.financer.org.id}",
                             headers=world.other_financer.headers)
    assert other.json() == []
    for who, code in ((world.site, 403), (world.issuer, 403), (None, 401)):
        answer = await client.get("/api/v1/invoices", headers=who.headers if who else {})
        assert answer.status_code == code


async def test_the_pdf_is_factur_x_and_only_for_its_financer(client: httpx.AsyncClient,
                                                              world: World) -> None:
    invoice = (await client.get("/api/v1/invoices", headers=world.financer.headers)).json()[0]
    answer = await client.get(f"/api/v1/invoices/{invoice['id']}.pdf",
                              headers=world.financer.headers)
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/pdf"
    _name, xml = facturx.get_xml_from_pdf(answer.content, check_xsd=True)
    assert invoice["number"].encode() in xml and invoice["payment_reference"].encode() in xml
    refused = await client.get(f"/api/v1/invoices/{invoice['id']}.pdf",
                               headers=world.other_financer.headers)
    assert refused.status_code == 404


async def test_a_bank_statement_upload_pays_the_invoice_and_twice_changes_nothing(
        client: httpx.AsyncClient, world: World) -> None:
    invoice = (await client.get("/api/v1/invoices", headers=world.financer.headers)).json()[0]
    cents = invoice["total_cents"]
    data = camt054([{"amount": f"{cents // 100}.{cents % 100:02d}",
                     "ref": invoice["payment_reference"]}], message_id=f"API-{invoice['id']}")
    files = {"file": ("releve.xml", io.BytesIO(data), "application/xml")}
    refused = await client.post("/api/v1/bank-statements", files=files,
                                headers=world.financer.headers)
    assert refused.status_code == 403
    files = {"file": ("releve.xml", io.BytesIO(data), "application/xml")}
    answer = await client.post("/api/v1/bank-statements", files=files,
                               headers=world.operator.headers)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert {k: body[k] for k in ("imported", "matched", "unmatched", "already_imported")} == \
        {"imported": 1, "matched": 1, "unmatched": 0, "already_imported": False}
    files = {"file": ("releve.xml", io.BytesIO(data), "application/xml")}
    again = (await client.post("/api/v1/bank-statements", files=files,
                               headers=world.operator.headers)).json()
    assert again["already_imported"] is True and again["imported"] == 0
    paid = (await client.get("/api/v1/invoices", headers=world.financer.headers)).json()
    assert next(i for i in paid if i["id"] == invoice["id"])["status"] == "paid"
    bad = await client.post("/api/v1/bank-statements", headers=world.operator.headers,
                            files={"file": ("x.xml", io.BytesIO(b"<nope"), "text/xml")})
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "invalid_bank_statement"


async def test_the_operator_sets_the_buyer_references(client: httpx.AsyncClient, world: World,
                                                      session: Any) -> None:
    path = f"/api/v1/programmes/{world.programme_id}/financers/{world.financer.org.id}"
    body = {"engagement_number": "EJ-1300042", "service_code": "DSI-FACT",
            "payment_method": "transfer"}
    refused = await client.patch(path, json=body, headers=world.financer.headers)
    assert refused.status_code == 403
    answer = await client.patch(path, json=body, headers=world.operator.headers)
    assert answer.status_code == 200, answer.text
    assert {k: answer.json()[k] for k in body} == body
    too_long = await client.patch(path, json={"engagement_number": "E" * 51},
                                  headers=world.operator.headers)
    assert too_long.status_code == 422
    wrong = await client.patch(path, json={"payment_method": "cash"},
                               headers=world.operator.headers)
    assert wrong.status_code == 422
    nobody = await client.patch(
        f"/api/v1/programmes/{world.programme_id}/financers/{world.other_financer.org.id}",
        json=body, headers=world.operator.headers)
    assert nobody.status_code == 404
    stored = (await session.execute(text(
        "SELECT engagement_number FROM programme_financer WHERE programme_id = :p "
        "AND organisation_id = :o"), {"p": world.programme_id, "o": world.financer.org.id})
    ).scalar()
    assert stored == "EJ-1300042"


async def test_the_openapi_describes_the_invoice_contract(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/api/openapi.json")).json()["paths"]
    assert "get" in paths["/api/v1/invoices"]
    assert "get" in paths["/api/v1/invoices/{invoice_id}.pdf"]
    assert "post" in paths["/api/v1/bank-statements"]
    assert "patch" in paths["/api/v1/programmes/{programme_id}/financers/{organisation_id}"]
