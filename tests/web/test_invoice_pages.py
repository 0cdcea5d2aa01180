"""Invoice pages without a browser (issue 14): the financer sees each invoice with how to pay
it and its PDF; the operator imports a bank statement from the page, confirms a suggested
match, sees overdue invoices with their days late and the missing buyer references."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tests.api import test_clearing_api
from tests.api.test_clearing_api import World
from tests.clearing.test_bank import camt054
from tests.web.test_money_pages import _as

world = test_clearing_api.world  # the clearing API tests' scene, shared


async def test_the_financer_sees_how_to_pay_each_invoice(client: Any, world: World) -> None:
    await _as(client, world.financer)
    page = await client.get("/financeur/factures")
    assert page.status_code == 200
    invoices = (await client.get("/api/v1/invoices")).json()
    assert invoices
    for inv in invoices:
        assert inv["number"] in page.text and inv["payment_reference"] in page.text
        assert f'/api/v1/invoices/{inv["id"]}.pdf' in page.text
    assert "FR7630006000011234567890189" in page.text and "émise" in page.text
    statement = await client.get(f"/financeur/releves/{world.financer_statement}")
    assert "Comment régler" in statement.text
    assert invoices[0]["payment_reference"] in statement.text


async def test_the_operator_imports_a_statement_and_confirms_a_suggestion(
        client: Any, world: World, session: AsyncSession) -> None:
    token = await _as(client, world.operator)
    invoices = (await client.get(f"/api/v1/invoices?batch_id={world.batch_id}")).json()
    state = next(i for i in invoices if i["financer_id"] == world.financer.org.id)
    other = next(i for i in invoices if i["financer_id"] != world.financer.org.id)
    iban = "FR7630004000031234567890143"
    await session.execute(text("UPDATE organisation SET iban = :i WHERE id = :o"),
                          {"i": iban, "o": other["financer_id"]})
    await session.commit()

    def euros(cents: int) -> str:
        return f"{cents // 100}.{cents % 100:02d}"

    data = camt054([{"amount": euros(state["total_cents"]), "ref": state["payment_reference"]},
                    {"amount": euros(other["total_cents"]), "iban": iban,
                     "text": "MANDAT 42"}], message_id=f"PAGE-{world.batch_id}")
    answer = await client.post("/operateur/factures/releve-bancaire",
                               data={"csrf_token": token},
                               files={"releve": ("camt054.xml", data, "application/xml")})
    assert answer.status_code == 303, answer.text
    page = await client.get("/operateur/factures")
    assert "1 facture(s) payée(s), 1 à vérifier" in page.text
    assert f"Confirmer : ce virement paie {other['number']}" in page.text
    line_id = (await session.execute(text(
        "SELECT id FROM bank_line WHERE invoice_id = :i AND status = 'suggested'"),
        {"i": other["id"]})).scalar()
    confirmed = await client.post(f"/operateur/factures/lignes/{line_id}/confirmer",
                                  data={"csrf_token": token})
    assert confirmed.status_code == 303
    assert f"Facture {other['number']} payée" in (await client.get("/operateur/factures")).text
    again = await client.post("/operateur/factures/releve-bancaire",
                              data={"csrf_token": token},
                              files={"releve": ("camt054.xml", data, "application/xml")})
    assert "déjà été importé" in (await client.get(again.headers["location"])).text
    broken = await client.post("/operateur/factures/releve-bancaire",
                               data={"csrf_token": token},
                               files={"releve": ("x.xml", b"<nope", "application/xml")})
    assert broken.status_code == 400 and "fr-error-text" in broken.text


async def test_overdue_invoices_and_missing_references_are_shown(
        client: Any, world: World, session: AsyncSession) -> None:
    token = await _as(client, world.operator)
    invoices = (await client.get(f"/api/v1/invoices?batch_id={world.batch_id}")).json()
    late = invoices[0]
    await session.execute(text(
        "UPDATE invoice SET due_date = paris_today - 12, issue_date = paris_today - 42 "
        "FROM (SELECT CAST(now() AT TIME ZONE 'Europe/Paris' AS date) AS paris_today) AS t "
        "WHERE id = :i"), {"i": late["id"]})  # the Paris calendar, as the page counts
    await session.execute(text(
        "UPDATE organisation SET financer_category = 'departement' WHERE id = :o"),
        {"o": world.financer.org.id})
    await session.execute(text(
        "UPDATE programme_financer SET requires_engagement = true, engagement_number = NULL "
        "WHERE programme_id = :p AND organisation_id = :o"),
        {"p": world.programme_id, "o": world.financer.org.id})
    await session.commit()
    page = await client.get("/operateur/factures")
    assert "Factures en retard" in page.text and late["number"] in page.text
    row = page.text.split(late["number"], 1)[1].split("</tr>", 1)[0]
    assert ">12<" in row  # days late, Paris calendar
    assert "Références de facturation manquantes" in page.text
    warning = page.text.split("Références de facturation manquantes", 1)[1].split("</ul>")[0]
    assert world.financer.org.name in warning and "engagement exigé" in warning

    edit = await client.post(
        f"/operateur/programmes/{world.programme_id}/financeurs/{world.financer.org.id}",
        data={"csrf_token": token, "engagement_number": "EJ-2026-7", "service_code": "",
              "payment_method": "transfer", "requires_engagement": "on"})
    assert edit.status_code == 303
    warnings = (await client.get("/operateur/factures")).text.split(
        "Références de facturation manquantes", 1)
    # (the shared test database holds other tests' financers, which may lack theirs)
    assert len(warnings) == 1 or world.financer.org.name not in warnings[1].split("</ul>")[0]
    listing = await client.get(f"/operateur/programmes/{world.programme_id}/financeurs")
    assert 'value="EJ-2026-7"' in listing.text
    too_long = await client.post(
        f"/operateur/programmes/{world.programme_id}/financeurs/{world.financer.org.id}",
        data={"csrf_token": token, "engagement_number": "E" * 60})
    assert too_long.status_code == 303
    assert "50 caractères" in (await client.get(too_long.headers["location"])).text


async def test_a_chorus_deposit_is_confirmed_before_it_is_sent(
        client: Any, app: Any, world: World, session: AsyncSession) -> None:
    from tests.clearing.test_chorus import FakeChorusPro

    await session.execute(text("UPDATE organisation SET financer_category = 'departement' "
                               "WHERE id = :o"), {"o": world.financer.org.id})
    await session.commit()
    token = await _as(client, world.operator)
    invoice = next(i for i in (await client.get(
        f"/api/v1/invoices?batch_id={world.batch_id}")).json()
        if i["financer_id"] == world.financer.org.id)
    saved = app.state.settings
    with FakeChorusPro() as fake:
        app.state.settings = saved.model_copy(update={
            "chorus_enabled": True, "chorus_api_base": fake.url,
            "chorus_token_url": f"{fake.url}/api/oauth/token", "chorus_client_id": "passnum",
            "chorus_client_secret": "secret", "chorus_login": "TECH_passnum@cpro.fr",
            "chorus_password": "motdepasse", "chorus_user_id": 12345})
        try:
            page = await client.get("/operateur/factures")
            assert f"Déposer {invoice['number']}" in page.text
            asked = await client.post(f"/operateur/factures/{invoice['id']}/chorus",
                                      data={"csrf_token": token})
            assert asked.status_code == 200 and "ne peut pas être retiré" in asked.text
            assert fake.flows == {}  # nothing sent before the confirmation
            done = await client.post(f"/operateur/factures/{invoice['id']}/chorus",
                                     data={"csrf_token": token, "confirme": "oui"})
            assert done.status_code == 303
            assert "déposée sur Chorus Pro" in (await client.get("/operateur/factures")).text
            assert len(fake.flows) == 1
        finally:
            app.state.settings = saved
    listed = (await client.get(f"/api/v1/invoices?batch_id={world.batch_id}")).json()
    assert next(i for i in listed if i["id"] == invoice["id"])["status"] == "deposited"
