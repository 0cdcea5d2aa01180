"""The agent hands out a booklet printed ahead (stock) by typing its number, then cancels it."""

from __future__ import annotations

import uuid
from typing import Any

from playwright.async_api import Page, expect
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.seed import DEMO_PASSWORD, seed_demo
from kit.clock import utcnow
from pass_ import beneficiaries, issuance
from pass_.enums import Role
from pass_.models import AppUser, Programme
from pass_.programmes import DEMO_PROGRAMME_NAME, Actor
from pass_.schemas import BeneficiaryCreate
from pass_.tokens import Keyring
from tests.e2e.conftest import assert_accessible, login


async def test_a_stock_booklet_is_handed_out_by_its_number_then_cancelled(
    page: Page, db: Any, settings: Any
) -> None:
    await db(seed_demo)
    reference = f"STOCK-{uuid.uuid4().hex[:6]}"

    async def stock(session: AsyncSession) -> str:
        agent = await session.scalar(
            select(AppUser).where(AppUser.email == "agent@ccas-admiville.fr")
        )
        programme = await session.scalar(
            select(Programme).where(Programme.name == DEMO_PROGRAMME_NAME)
        )
        assert agent is not None and programme is not None
        await beneficiaries.create_beneficiary(
            session,
            issuer_id=agent.organisation_id,
            data=BeneficiaryCreate(reference=reference, need_level=1),
        )
        order = await issuance.order_booklets(
            session,
            keyring=Keyring.load_or_create(settings.keys_dir),
            actor=Actor(agent.id, agent.organisation_id, Role.issuer_agent),
            programme_id=programme.id,  # type: ignore[arg-type]
            issuer_id=agent.organisation_id,
            booklets=1,
            size=5,
            now=utcnow(),
        )
        return order.booklets[0].number

    number = await db(stock)
    await login(page, "agent@ccas-admiville.fr", DEMO_PASSWORD)
    await page.goto("/prescripteur/remise")
    await expect(page.get_by_role("button", name="Scanner le numéro")).to_be_visible()
    await page.get_by_role("textbox", name="Numéro du carnet").fill(number.lower())
    await page.get_by_role("textbox", name="Référence du bénéficiaire").fill(reference)
    await page.get_by_role("button", name="Remettre le carnet").click()
    await expect(page.get_by_text(f"Carnet {number} remis")).to_be_visible()
    await expect(page.locator("table").get_by_text("Actif")).to_have_count(5)
    await assert_accessible(page)

    await page.get_by_role("textbox", name="Raison de l'annulation").fill("Carnet perdu")
    await page.get_by_role("button", name="Annuler le carnet").click()
    await expect(page.get_by_text(f"Carnet {number} annulé")).to_be_visible()
    await expect(page.locator("table").get_by_text("Annulé")).to_have_count(5)
