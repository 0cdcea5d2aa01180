"""Issue 16, the everyday pages at phone width in Chromium: one label for "no démarche"
(item 9), the operator's statement breadcrumb and menu (item 10), every table readable at 360 px
(item 13) and the accessibility statement (item 16)."""

from __future__ import annotations

from typing import Any

from playwright.async_api import Page, expect
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.seed import DEMO_PASSWORD
from tests.e2e.conftest import (
    DEMO_SITE_MEDIATOR,
    assert_accessible,
    assert_readable_on_a_phone,
    count_figures,
    login,
    logout,
    screenshot,
)


async def test_statements_read_at_phone_width_with_one_label_and_the_right_trail(
    page: Page, issue_cheques: Any, db: Any
) -> None:
    from clearing.batches import close_batch
    from clearing.models import Statement
    from kit.clock import utcnow
    from pass_.models import Organisation

    cheques = await issue_cheques(5)
    await login(page, DEMO_SITE_MEDIATOR, DEMO_PASSWORD)
    await page.get_by_text("Écrire un document", exact=True).click()
    await expect(page.locator("#resume-demarche")).to_have_text("Sans démarche précisée")
    await page.get_by_label("Numéro du chèque").fill(cheques[0].serial)
    await page.get_by_role("button", name="Encaisser le chèque").click()
    await expect(page.locator("#resultat")).to_contain_text("Chèque encaissé")

    async def close(session: AsyncSession) -> tuple[int, int]:
        batch, _ = await close_batch(session, cutoff=utcnow(), now=utcnow())
        site = await session.scalar(
            select(Organisation).where(Organisation.name == "Médiathèque des Champs Libres")
        )
        statement = await session.scalar(
            select(Statement).where(
                Statement.batch_id == batch.id,
                Statement.organisation_id == site.id,  # type: ignore[union-attr]
            )
        )
        assert statement is not None
        return int(batch.id), int(statement.id)  # type: ignore[arg-type]

    batch_id, statement_id = await db(close)

    # Item 13: the site's statements, list and detail, at 360 px.
    await page.goto("/mediateur/releves")
    await assert_readable_on_a_phone(page)
    await page.get_by_role("link", name=f"N° {statement_id}").click()
    await expect(page.get_by_role("heading", name=f"Relevé n° {statement_id}")).to_be_visible()
    lines = page.locator("table").last
    await expect(lines).to_contain_text(cheques[0].serial)
    # Item 9: « Sans démarche précisée », as on the scan page and the financer's pages.
    await expect(lines).to_contain_text("Écrire un document · Sans démarche précisée")
    await assert_readable_on_a_phone(page)
    box = await lines.bounding_box()
    assert box is not None and box["width"] <= 360, box  # stacked rows, not 813 px
    await assert_accessible(page)
    await screenshot(page, "mediateur-releve-360")
    await logout(page)

    # Item 13: the empty state of a site without statements is whole.
    await login(page, "mediateur@clic-solidaire.fr", DEMO_PASSWORD)
    await page.goto("/mediateur/releves")
    await expect(page.get_by_text("Aucun relevé pour le moment")).to_be_visible()
    await assert_readable_on_a_phone(page)
    await logout(page)

    # Item 10: the operator's statement belongs to clearing: trail and menu say so.
    await page.set_viewport_size({"width": 1280, "height": 900})
    await login(page, "admin@demo.passnum.fr", DEMO_PASSWORD)
    await page.goto(f"/operateur/releves/{statement_id}")
    trail = page.get_by_role("navigation", name="vous êtes ici :")
    await expect(trail.get_by_role("link", name=f"Lot n° {batch_id}")).to_have_attribute(
        "href", f"/operateur/compensation/lots/{batch_id}"
    )
    await expect(trail.get_by_role("link", name="Compensation")).to_be_visible()
    await expect(trail.get_by_role("link", name="Relevés")).to_have_count(0)
    current = page.locator("#navigation-principale a[aria-current=page]")
    await expect(current).to_have_text("Compensation")
    await assert_accessible(page)
    await logout(page)

    # Item 9 again: the financer's dashboard names the same bucket the same way.
    await login(page, "financeur@ille-et-vilaine.fr", DEMO_PASSWORD)
    from pass_.models import Programme
    from pass_.programmes import DEMO_PROGRAMME_NAME

    async def programme_id(session: AsyncSession) -> int:
        found = await session.scalar(
            select(Programme.id).where(Programme.name == DEMO_PROGRAMME_NAME)
        )
        return int(found)  # type: ignore[arg-type]

    await db(count_figures)  # the sealer and the rollup, as `passnum serve` runs them
    await page.goto(f"/financeur/programmes/{await db(programme_id)}")
    bucket = page.get_by_text("Sans démarche précisée").filter(visible=True)
    await expect(bucket.first).to_be_visible()
    await expect(page.get_by_text("Sans démarche", exact=True)).to_have_count(0)


async def test_the_accessibility_statement_is_published_and_linked_from_every_page(
    page: Page,
) -> None:
    await page.goto("/connexion")
    link = page.get_by_role("link", name="Accessibilité : non conforme")
    await expect(link).to_have_attribute("href", "/accessibilite")
    await link.click()
    await expect(page.get_by_role("heading", name="Déclaration d'accessibilité")).to_be_visible()
    await expect(page.get_by_text("non conforme", exact=True)).to_be_visible()
    await expect(
        page.get_by_text("n'a pas encore fait l'objet d'un audit", exact=False)
    ).to_be_visible()
    await expect(page.get_by_role("link", name="accessibilite@demo.passnum.fr")).to_have_attribute(
        "href", "mailto:accessibilite@demo.passnum.fr"
    )
    await expect(page.get_by_role("heading", name="Voies de recours")).to_be_visible()
    await assert_accessible(page)
    await assert_readable_on_a_phone(page)
    await screenshot(page, "accessibilite")
