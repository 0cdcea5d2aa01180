"""The anomaly watch's pages in Chromium (issue 16): the operator runs the watch, reads an
alert with its evidence and marks it « justifiée » with a note; a financer of the programme
sees it on its own page. Axe finds nothing serious; photographed at phone width."""

from __future__ import annotations

from typing import Any

from playwright.async_api import Page, expect
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.seed import DEMO_PASSWORD
from tests.e2e.conftest import (
    assert_accessible,
    assert_readable_on_a_phone,
    login,
    logout,
    screenshot,
)


async def test_the_operator_reviews_an_alert_and_the_financer_sees_it(
    page: Page, issue_cheques: Any, db: Any, settings: Any
) -> None:
    from kit.clock import utcnow
    from pass_ import redemption
    from pass_.enums import Service
    from pass_.models import Booklet, Cheque, Organisation

    cheques = await issue_cheques(5)

    async def burst(session: AsyncSession) -> str:
        site = await session.scalar(
            select(Organisation).where(Organisation.name == "Médiathèque des Champs Libres")
        )
        assert site is not None
        from pass_.tokens import Keyring

        keyring = Keyring.load_or_create(settings.keys_dir)
        for cheque in cheques:  # the whole booklet, one after the other
            await redemption.redeem_cheque(
                session,
                keyring=keyring,
                site_id=site.id,
                user_id=None,  # type: ignore[arg-type]
                code=cheque.serial,
                service=Service.naviguer_web,
                demarche_family=None,
                now=utcnow(),
            )
        booklet = await session.scalar(
            select(Booklet)
            .join(Cheque, Cheque.booklet_id == Booklet.id)
            .where(Cheque.serial == cheques[0].serial)
        )
        return str(booklet.number)  # type: ignore[union-attr]

    number = await db(burst)

    await login(page, "admin@demo.passnum.fr", DEMO_PASSWORD)
    await page.goto("/operateur/alertes")
    await expect(page.get_by_role("heading", name="Alertes", exact=True)).to_be_visible()
    await page.get_by_role("button", name="Lancer la surveillance maintenant").click()
    await expect(page.locator(".fr-alert, .fr-notice").first).to_contain_text("Surveillance lancée")
    card = page.locator("article.pn-alert", has_text=number)
    await expect(card).to_have_count(1)
    await expect(card).to_contain_text("Carnet encaissé d'un coup")
    await expect(card).to_contain_text("Médiathèque des Champs Libres")
    await card.get_by_text("encaissements en cause").click()
    await expect(card.locator("table")).to_contain_text(cheques[0].serial)
    await assert_readable_on_a_phone(page)
    await expect(page.get_by_text("Les règles surveillées")).to_be_visible()
    await assert_accessible(page)
    await screenshot(page, "operateur-alertes")
    # Twice: nothing new (the watch is idempotent).
    await page.get_by_role("button", name="Lancer la surveillance maintenant").click()
    await expect(page.locator(".fr-alert, .fr-notice").first).to_contain_text(
        "aucune nouvelle alerte"
    )
    await expect(page.locator("article.pn-alert", has_text=number)).to_have_count(1)

    await logout(page)
    await login(page, "financeur@ille-et-vilaine.fr", DEMO_PASSWORD)
    await expect(page.locator("#navigation-principale a[href='/financeur/alertes']")).to_have_text(
        "Alertes"
    )
    await page.goto("/financeur/alertes")
    await expect(page.get_by_role("heading", name="Alertes sur vos programmes")).to_be_visible()
    await expect(page.locator("article.pn-alert", has_text=number)).to_have_count(1)
    await expect(page.get_by_role("button", name="Marquer justifiée")).to_have_count(0)
    await assert_accessible(page)
    await screenshot(page, "financeur-alertes")
    await logout(page)

    await login(page, "admin@demo.passnum.fr", DEMO_PASSWORD)
    await page.goto("/operateur/alertes")
    card = page.locator("article.pn-alert", has_text=number)
    await card.get_by_label("Pourquoi est-elle justifiée ?").fill(
        "Atelier collectif : 5 séances le même jour"
    )
    await card.get_by_role("button", name="Marquer justifiée").click()
    await expect(page.locator(".fr-alert, .fr-notice").first).to_contain_text(
        "Alerte marquée justifiée"
    )
    await expect(page.locator("article.pn-alert", has_text=number)).to_have_count(0)
    await page.get_by_role("link", name="Justifiées").click()
    done = page.locator("article.pn-alert", has_text=number)
    await expect(done).to_contain_text("Justifiée : « Atelier collectif : 5 séances le même jour »")
    await assert_accessible(page)
