"""Issue 16, item 6 in a browser: closing a batch shows a preview first (« 5 encaissements,
50,00 € »), refuses an empty batch with a clear message (no batch, no SEPA file), and the
operator records the whole batch's transfers at once."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from playwright.async_api import Page, expect
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from clearing.batches import close_batch
from clearing.errors import BatchEmpty
from kit.clock import utcnow
from kit.money import format_eur
from pass_ import accounts, redemption
from pass_.enums import OrganisationKind, Role, Service
from pass_.models import AppUser
from pass_.schemas import UserCreate
from pass_.tokens import Keyring
from tests.e2e.conftest import DEMO_SITE_MEDIATOR, assert_accessible, login, screenshot
from tests.factories import make_org

PASSWORD = "lot-apercu-2026"


async def test_a_batch_is_previewed_refused_when_empty_and_its_transfers_recorded_at_once(
        page: Page, db: Any, issue_cheques: Any, settings: Any) -> None:
    admin = f"admin-lot-{uuid.uuid4().hex[:6]}@operateur.fr"
    cheques = await issue_cheques(5)  # the demo programme, seeded

    async def bootstrap(session: AsyncSession) -> None:
        operator = await make_org(session, OrganisationKind.operator)
        await accounts.create_user(session, UserCreate(
            email=admin, password=PASSWORD, organisation_id=operator.id,  # type: ignore[arg-type]
            role=Role.operator_admin))
        try:  # whatever other tests left unbatched, so that this test sees an empty batch
            await close_batch(session, cutoff=utcnow() - timedelta(seconds=1), now=utcnow())
        except BatchEmpty:
            pass

    await db(bootstrap)
    batches_before = await db(lambda s: s.scalar(text("SELECT count(*) FROM batch")))

    # Nothing to clear: the preview says so, offers no « Clore le lot », and no batch is made.
    await login(page, admin, PASSWORD)
    await page.goto("/operateur/compensation")
    await page.get_by_text("Maintenant", exact=False).click()
    await page.get_by_role("button", name="Voir l'aperçu").click()
    await expect(page.get_by_role("alert")).to_contain_text("Aucun encaissement à compenser")
    await expect(page.get_by_role("button", name="Clore le lot")).to_have_count(0)
    await assert_accessible(page)
    assert await db(lambda s: s.scalar(text("SELECT count(*) FROM batch"))) == batches_before

    # Five cheques redeemed at the demo mediathèque.
    async def redeem_all(session: AsyncSession) -> int:
        mediator = await session.scalar(
            select(AppUser).where(AppUser.email == DEMO_SITE_MEDIATOR))
        assert mediator is not None
        for cheque in cheques:
            await redemption.redeem_cheque(
                session, keyring=Keyring.load_or_create(settings.keys_dir),
                site_id=mediator.organisation_id, user_id=mediator.id, code=cheque.serial,
                service=Service.naviguer_web, demarche_family=None, now=utcnow())
        return int(mediator.organisation_id)  # type: ignore[arg-type]

    site_id = await db(redeem_all)
    total = format_eur(sum(c.value_cents for c in cheques))

    await page.get_by_text("Maintenant", exact=False).click()
    await page.get_by_role("button", name="Voir l'aperçu").click()
    preview = page.locator("#apercu")
    await expect(preview).to_contain_text(f"5 encaissements, {total}")
    await assert_accessible(page)
    await screenshot(page, "compensation-apercu")
    await page.get_by_role("button", name="Clore le lot").click()
    await expect(page.get_by_role("heading", name="Lot de compensation n°")).to_be_visible()
    await expect(page.get_by_text(f"5 encaissement(s), {total}")).to_be_visible()

    # All the batch's transfers at once, after an explicit confirmation.
    await page.get_by_text("Je confirme que le fichier SEPA de ce lot").click()  # DSFR label
    await page.get_by_role("button", name="Enregistrer les virements du lot").click()
    await expect(page.get_by_text("virement(s) enregistré(s)")).to_be_visible()
    await expect(page.get_by_role("button", name="Enregistrer les virements du lot")
                 ).to_have_count(0)
    await assert_accessible(page)
    batch_id = int(page.url.rstrip("/").rsplit("/", 1)[1])
    statuses = await db(lambda s: s.execute(text(
        "SELECT id, organisation_id, status, payment_reference FROM statement "
        "WHERE batch_id = :b AND kind = 'site'"), {"b": batch_id}))
    [(statement_id, organisation_id, status, reference)] = statuses.all()
    assert (organisation_id, status) == (site_id, "paid")
    assert reference == f"PN-LOT-{batch_id}/{statement_id}"
