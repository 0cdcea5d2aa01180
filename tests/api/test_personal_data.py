"""Data protection (issue 17, RGPD): the issuer exports a beneficiary's record and erases it on
request — the reference goes, the cheques and the money stay; another issuer sees nothing; the
public « Données personnelles » page."""

from __future__ import annotations

import re

from sqlalchemy import text

from pass_.enums import OrganisationKind
from tests.clearing.factories import issue_cheques, make_scheme, make_site, paris, redeem
from tests.factories import make_actor


async def test_the_issuer_exports_then_erases_a_beneficiary_keeping_cheques_and_money(
        client, session, app) -> None:
    scheme = await make_scheme(session, app.state.keyring)
    [cheque] = await issue_cheques(session, scheme, 1)
    await redeem(session, scheme, await make_site(session), cheque, at=paris(2024, 2, 2))
    beneficiary_id = await session.scalar(text(
        "SELECT b.beneficiary_id FROM booklet b JOIN cheque c ON c.booklet_id = b.id "
        "WHERE c.serial = :s"), {"s": cheque.serial})
    await session.execute(text(
        "UPDATE beneficiary SET birth_year = 1950, commune_insee = '35238' WHERE id = :id"),
        {"id": beneficiary_id})
    reference = await session.scalar(text("SELECT reference FROM beneficiary WHERE id = :id"),
                                      {"id": beneficiary_id})
    agent = await make_actor(session, app, OrganisationKind.issuer, org=scheme.issuer)
    other = await make_actor(session, app, OrganisationKind.issuer)
    assert reference

    exported = await client.get(f"/api/v1/beneficiaries/{beneficiary_id}/export",
                                headers=agent.headers)
    assert exported.status_code == 200, exported.text
    data = exported.json()
    assert data["beneficiary"]["reference"] == reference
    assert data["beneficiary"]["birth_year"] == 1950
    assert [c["serial"] for c in data["cheques"]] == [cheque.serial]
    assert data["cheques"][0]["status"] == "redeemed" and data["cheques"][0]["redeemed_at_site"]
    for who in (other,):  # another issuer cannot even tell the record exists
        assert (await client.get(f"/api/v1/beneficiaries/{beneficiary_id}/export",
                                 headers=who.headers)).status_code == 404
        assert (await client.post(f"/api/v1/beneficiaries/{beneficiary_id}/erase",
                                  json={"confirm": True}, headers=who.headers)
                ).status_code == 404

    ledger_before = (await session.execute(text(
        "SELECT count(*), coalesce(sum(abs(amount_cents)), 0) FROM ledger_posting"))).one()
    unconfirmed = await client.post(f"/api/v1/beneficiaries/{beneficiary_id}/erase", json={},
                                    headers=agent.headers)
    assert unconfirmed.status_code == 422
    assert unconfirmed.json()["error"]["code"] == "confirmation_required"
    erased = await client.post(f"/api/v1/beneficiaries/{beneficiary_id}/erase",
                               json={"confirm": True}, headers=agent.headers)
    assert erased.status_code == 200, erased.text
    assert (erased.json()["reference"], erased.json()["birth_year"],
            erased.json()["commune_insee"]) == (None, None, None)
    assert erased.json()["pseudonymised_at"]

    # The cheques, the redemption and the money are untouched.
    row = (await session.execute(text(
        "SELECT c.status, r.value_cents FROM cheque c JOIN redemption r ON r.cheque_id = c.id "
        "WHERE c.serial = :s AND r.reversed_at IS NULL"), {"s": cheque.serial})).one()
    assert row == ("redeemed", cheque.value_cents)
    assert (await session.execute(text(
        "SELECT count(*), coalesce(sum(abs(amount_cents)), 0) FROM ledger_posting"))
    ).one() == ledger_before
    again = await client.get(f"/api/v1/beneficiaries/{beneficiary_id}/export",
                             headers=agent.headers)
    assert again.json()["beneficiary"]["reference"] is None
    assert [c["serial"] for c in again.json()["cheques"]] == [cheque.serial]


async def test_the_personal_data_page_is_public_and_linked_from_every_page(client) -> None:
    page = await client.get("/donnees-personnelles")
    assert page.status_code == 200
    assert "Données personnelles" in page.text and "CNIL" in page.text
    assert re.search(r"effacée 3 ans \(1\s?095 jours\)", page.text), page.text[:2000]
    login = await client.get("/connexion")
    assert 'href="/donnees-personnelles"' in login.text
