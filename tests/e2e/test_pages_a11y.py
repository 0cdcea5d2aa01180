"""Every page, for every kind of user, checked with axe-core (no serious or critical violation),
and each home page photographed at phone width for people to look at (tests/e2e/artifacts)."""

from __future__ import annotations

from typing import Any

from playwright.async_api import Page, expect
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.seed import DEMO_PASSWORD
from pass_.models import Beneficiary, Booklet, Programme
from pass_.programmes import DEMO_PROGRAMME_NAME
from tests.e2e.conftest import (
    DEMO_SITE_MEDIATOR,
    assert_accessible,
    assert_readable_on_a_phone,
    login,
    logout,
    screenshot,
)


async def visit(page: Page, path: str) -> None:
    answer = await page.goto(path)
    assert answer is not None and answer.status < 400, f"{path}: {answer and answer.status}"
    await expect(page.locator("h1").first).to_be_visible()
    await assert_accessible(page)
    await assert_readable_on_a_phone(page)


async def test_every_page_is_accessible_and_homes_fit_a_phone(
    page: Page, issue_cheques: Any, db: Any
) -> None:
    cheques = await issue_cheques(5)

    async def ids(session: AsyncSession) -> dict[str, Any]:
        booklet = await session.scalar(select(Booklet).order_by(Booklet.id.desc()).limit(1))
        programme = await session.scalar(
            select(Programme).where(Programme.name == DEMO_PROGRAMME_NAME)
        )
        return {
            "booklet": booklet.number,  # type: ignore[union-attr]
            "beneficiary": booklet.beneficiary_id,  # type: ignore[union-attr]
            "programme": programme.id,  # type: ignore[union-attr]
            "reference": (await session.get(Beneficiary, booklet.beneficiary_id)).reference,  # type: ignore[union-attr]
        }

    known = await db(ids)

    await visit(page, "/connexion")
    await page.get_by_role("button", name="Se connecter").click()  # empty: errors tied to fields
    await expect(page.get_by_text("Saisissez votre adresse e-mail.")).to_be_visible()
    await assert_accessible(page)
    await screenshot(page, "connexion")

    # The mediator first, so that the other dashboards have a redemption to show.
    await login(page, DEMO_SITE_MEDIATOR, DEMO_PASSWORD)
    await expect(page.get_by_role("heading", name="Scanner un chèque")).to_be_visible()
    await assert_accessible(page)
    await page.get_by_text("Connaître ses droits", exact=True).click()
    await page.locator("#choix-demarche summary").click()
    await page.get_by_text("CAF (allocations familiales)", exact=True).click()
    await page.get_by_label("Numéro du chèque").fill(cheques[0].serial)
    await page.get_by_role("button", name="Encaisser le chèque").click()
    await expect(page.locator("#resultat")).to_contain_text("Chèque encaissé — 10 €")
    await assert_accessible(page)
    await screenshot(page, "mediateur-accueil")
    await page.get_by_label("Numéro du chèque").fill(cheques[0].serial)
    await page.get_by_role("button", name="Encaisser le chèque").click()
    await expect(page.locator("#resultat")).to_contain_text("Chèque déjà encaissé")
    await assert_accessible(page)
    await screenshot(page, "mediateur-refus")
    for path in ("/mediateur/encaissements", "/mediateur/releves", "/mediateur/banque"):
        await visit(page, path)
    await screenshot(page, "mediateur-banque")
    await logout(page)

    await login(page, "admin@demo.passnum.fr", DEMO_PASSWORD)
    await expect(page.get_by_role("heading", name="Accueil opérateur")).to_be_visible()
    await assert_accessible(page)
    await screenshot(page, "operateur-accueil")
    for path in (
        "/operateur/organisations",
        "/operateur/organisations?type=site",
        "/operateur/organisations/nouvelle",
        "/operateur/qualification",
        "/operateur/programmes",
        "/operateur/programmes/nouveau",
        f"/operateur/programmes/{known['programme']}",
        "/operateur/compensation",
        "/operateur/audit?lancer=1",
        "/operateur/expiration",
        "/donnees-personnelles",
        "/operateur/alertes",
        "/operateur/alertes?statut=justified",
    ):
        await visit(page, path)
    await page.goto("/operateur/organisations/nouvelle")
    await page.get_by_role("button", name="Créer l'organisation").click()
    await expect(page.get_by_text("Ce champ est obligatoire.").first).to_be_visible()
    await assert_accessible(page)
    await page.goto("/operateur/organisations")
    await page.get_by_role("link", name="Médiathèque des Champs Libres").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Médiathèque des Champs Libres")
    await assert_accessible(page)
    await logout(page)

    await login(page, "agent@ccas-admiville.fr", DEMO_PASSWORD)
    await expect(
        page.get_by_role("heading", name="Accueil structure prescriptrice")
    ).to_be_visible()
    await assert_accessible(page)
    await screenshot(page, "prescripteur-accueil")
    for path in (
        "/prescripteur/beneficiaires",
        f"/prescripteur/beneficiaires?reference={known['reference'][:5]}",
        f"/prescripteur/beneficiaires/{known['beneficiary']}",
        "/prescripteur/carnets",
        "/prescripteur/remise",
        f"/prescripteur/carnets/{known['booklet']}",
    ):
        await visit(page, path)
    await screenshot(page, "prescripteur-carnet")
    await page.goto("/prescripteur/beneficiaires")  # results come as one types (htmx)
    await page.get_by_role("searchbox", name="Référence du bénéficiaire").fill(known["reference"])
    await expect(page.get_by_role("link", name=known["reference"])).to_be_visible()
    await logout(page)

    await login(page, "financeur@caf35.fr", DEMO_PASSWORD)
    await expect(page.get_by_role("heading", name="En bref")).to_be_visible()
    await assert_accessible(page)
    await screenshot(page, "financeur-accueil")
    await visit(page, f"/financeur/programmes/{known['programme']}")
    await visit(page, "/financeur/releves")
    await visit(page, "/financeur/alertes")
    await logout(page)
