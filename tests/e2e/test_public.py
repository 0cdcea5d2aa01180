"""The public side in Chromium at 360 px (issue 15), and issue 16's items 8 and 15:
- a person finds the nearest site from a postcode, opens its page (an itinerant one), and opens
  « mon pass » by the QR code of a real booklet cover (decoded from the rendered PDF);
- the agent picks a commune by postcode, the financer's dashboard names communes;
- the agent is warned when little validity is left on a programme.
axe-core finds no serious or critical violation on these pages, none scrolls sideways."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import zxingcpp
from PIL import Image
from playwright.async_api import Page, expect
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.seed import DEMO_PASSWORD, seed_demo
from kit.clock import utcnow
from pass_ import beneficiaries, booklet_print, issuance
from pass_.enums import Role
from pass_.models import AppUser, Programme
from pass_.programmes import DEMO_PROGRAMME_NAME, Actor
from pass_.schemas import BeneficiaryCreate
from pass_.tokens import Keyring
from tests.e2e.conftest import (
    DEMO_SITE_MEDIATOR,
    assert_accessible,
    count_figures,
    login,
    screenshot,
)
from tests.support.system import ensure_debian_packages


async def no_sideways_scroll(page: Page) -> None:
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 360, f"{page.url} is {width} px wide at 360 px"


async def issued_booklet(db: Any, settings: Any, live_server: str) -> tuple[str, bytes]:
    """A booklet of the demo programme handed to a new person: its number and its PDF, printed
    with the live server as public address."""

    async def work(session: AsyncSession) -> tuple[str, bytes]:
        agent = await session.scalar(
            select(AppUser).where(AppUser.email == "agent@ccas-admiville.fr")
        )
        programme = await session.scalar(
            select(Programme).where(Programme.name == DEMO_PROGRAMME_NAME)
        )
        assert agent is not None and programme is not None
        actor = Actor(agent.id, agent.organisation_id, Role.issuer_agent)
        person = await beneficiaries.create_beneficiary(
            session,
            issuer_id=agent.organisation_id,
            data=BeneficiaryCreate(reference=f"PASS-{uuid.uuid4().hex[:8]}", need_level=2),
        )
        booklet = await issuance.issue_booklet(
            session,
            keyring=Keyring.load_or_create(settings.keys_dir),
            actor=actor,
            programme_id=programme.id,  # type: ignore[arg-type]
            beneficiary_id=person.id,  # type: ignore[arg-type]
            size=5,
            now=utcnow(),
        )
        content = await booklet_print.booklet_pdf(
            session, actor=actor, ref=booklet.id, public_url=live_server
        )
        return booklet.number, content

    return await db(work)


def cover_qr(content: bytes, tmp_path: Path) -> str:
    """What a phone reads from the cover's QR code: the PDF's first page rendered by poppler,
    decoded by zxing-cpp."""
    ensure_debian_packages(["poppler-utils"], binaries=["pdftoppm"])
    source = tmp_path / "carnet.pdf"
    source.write_bytes(content)
    subprocess.run(
        ["pdftoppm", "-r", "150", "-f", "1", "-l", "1", "-png", str(source), str(tmp_path / "c")],
        check=True,
    )
    [png] = sorted(tmp_path.glob("c-*.png"))
    found = [r.text for r in zxingcpp.read_barcodes(Image.open(png)) if "/mon-pass/" in r.text]
    assert len(found) == 1, found
    return found[0]


async def test_a_person_finds_a_site_from_a_postcode_and_opens_mon_pass_from_the_cover(
    page: Page, db: Any, settings: Any, live_server: str, tmp_path: Path
) -> None:
    await db(seed_demo)
    await page.goto("/lieux")
    await page.get_by_label("Votre commune ou votre code postal").fill("35510")
    await page.get_by_role("button", name="Rechercher").click()
    await expect(
        page.get_by_role("heading", name="Lieux les plus proches de Cesson-Sévigné (35)")
    ).to_be_visible()
    cards = page.locator(".pn-lieux > li")
    await expect(cards.first).to_contain_text("Cyber-bus de la Métropole")  # 0 km: its commune
    await expect(cards.first).to_contain_text("Itinérant")
    await expect(cards.nth(1)).to_contain_text("km")
    await expect(page.get_by_text("Bus numérique itinérant")).to_have_count(0)  # not qualified
    await assert_accessible(page)
    await no_sideways_scroll(page)
    await screenshot(page, "public-lieux")
    await cards.first.get_by_role("link").click()
    await expect(page.get_by_role("heading", name="Cyber-bus de la Métropole")).to_be_visible()
    await expect(page.get_by_role("table")).to_contain_text("Place des Lices, Rennes")
    await assert_accessible(page)
    await no_sideways_scroll(page)
    await screenshot(page, "public-lieu")

    number, content = await issued_booklet(db, settings, live_server)
    url = cover_qr(content, tmp_path)
    assert url.startswith(f"{live_server}/mon-pass/{number}?code=")
    await page.goto(url)  # what a phone camera opens
    await expect(page.locator("#solde")).to_contain_text(f"Carnet n° {number}")
    await expect(page.locator("#solde")).to_contain_text("Il vous reste 5 chèques de 10,00 €")
    await expect(page.get_by_role("heading", name="Les lieux les plus proches")).to_be_visible()
    # (which ones depends on the other tests' sites of the shared database: all in Rennes here)
    await expect(page.locator("main li a[href^='/lieux/']").first).to_be_visible()
    await assert_accessible(page)
    await no_sideways_scroll(page)
    await screenshot(page, "public-mon-pass")
    # A wrong code: one generic message, nothing about the booklet.
    await page.goto(f"/mon-pass/{number}?code=000000")
    await expect(page.get_by_role("alert")).to_contain_text("Nous ne trouvons pas ce carnet")
    await expect(page.locator("#solde")).to_have_count(0)
    # The form without a QR code: number and code typed.
    await page.goto("/mon-pass")
    await page.locator("#champ-numero").fill(number)
    await page.locator("#champ-code").fill(url.rsplit("=", 1)[1].lower())
    await page.get_by_role("button", name="Voir mon pass").click()
    await expect(page.locator("#solde")).to_contain_text("Il vous reste 5 chèques")
    await assert_accessible(page)


async def test_the_agent_picks_a_commune_by_postcode_and_the_financer_reads_names(
    page: Page, db: Any, live_server: str
) -> None:
    await db(seed_demo)
    await login(page, "agent@ccas-admiville.fr", DEMO_PASSWORD)
    await page.goto("/prescripteur/beneficiaires")
    reference = f"COMMUNE-{uuid.uuid4().hex[:6]}"
    await page.get_by_role("textbox", name="Référence").first.fill(reference)
    await page.locator("label[for=niveau-2]").click()
    field = page.locator("#champ-commune_insee")
    await field.fill("3569")
    await field.press_sequentially("0")
    # The suggestions come from the commune reference: Acigné serves 35690.
    await expect(page.locator("#champ-commune_insee-suggestions option")).to_have_count(1)
    value = await page.locator("#champ-commune_insee-suggestions option").first.get_attribute(
        "value"
    )
    assert value == "Acigné (35) · 35001"
    await field.fill(value)
    await assert_accessible(page)
    await page.get_by_role("button", name="Enregistrer le bénéficiaire").click()
    await expect(page.get_by_text("Acigné", exact=True)).to_be_visible()
    await no_sideways_scroll(page)

    # A redemption at the médiathèque (Rennes, INSEE 35238), through the API.
    number_cheques = await db(
        lambda s: s.scalar(select(Programme.id).where(Programme.name == DEMO_PROGRAMME_NAME))
    )
    assert number_cheques is not None
    async with httpx.AsyncClient(base_url=live_server) as api:
        token = (
            await api.post(
                "/api/v1/auth/token",
                data={"username": "agent@ccas-admiville.fr", "password": DEMO_PASSWORD},
            )
        ).json()["access_token"]
        agent = {"Authorization": f"Bearer {token}"}
        person = await api.post(
            "/api/v1/beneficiaries",
            json={"reference": f"R-{uuid.uuid4().hex[:6]}", "need_level": 2},
            headers=agent,
        )
        booklet = await api.post(
            "/api/v1/booklets",
            json={"programme_id": number_cheques, "beneficiary_id": person.json()["id"], "size": 5},
            headers=agent,
        )
        serial = booklet.json()["cheques"][0]["serial"]
        mediator = (
            await api.post(
                "/api/v1/auth/token",
                data={"username": DEMO_SITE_MEDIATOR, "password": DEMO_PASSWORD},
            )
        ).json()["access_token"]
        redeemed = await api.post(
            "/api/v1/redemptions",
            json={"code": serial, "service": "creer_courriel"},
            headers={"Authorization": f"Bearer {mediator}", "Idempotency-Key": uuid.uuid4().hex},
        )
        assert redeemed.status_code == 201, redeemed.text

    await db(count_figures)  # the sealer and the rollup, as `passnum serve` runs them
    await page.context.clear_cookies()
    await login(page, "financeur@ille-et-vilaine.fr", DEMO_PASSWORD)
    await page.goto("/financeur")
    await page.get_by_text("Voir les données en tableau").last.click()  # the communes' chart
    table = page.locator("table").last
    await expect(table.locator("caption")).to_contain_text("par commune")
    await expect(table).to_contain_text("Rennes")
    assert "35238" not in await table.inner_text()
    assert "INSEE" not in await page.locator("main").inner_text()
    await assert_accessible(page)


async def test_the_agent_is_warned_when_little_validity_is_left(
    page: Page, db: Any, settings: Any
) -> None:
    await db(seed_demo)
    saved = settings.validity_alert_days
    settings.validity_alert_days = 366  # the demo programme ends on 31 December: always within
    try:
        await login(page, "agent@ccas-admiville.fr", DEMO_PASSWORD)
        alert = page.locator(".pn-validity-alert").first
        await expect(alert).to_contain_text(f"« {DEMO_PROGRAMME_NAME} » se termine dans")
        await expect(alert).to_contain_text("carnet")
        await expect(alert).to_contain_text("chèque")
        await assert_accessible(page)
        await no_sideways_scroll(page)
        await screenshot(page, "agent-fin-de-validite")
    finally:
        settings.validity_alert_days = saved
    await page.reload()
    if (
        await db(
            lambda s: s.scalar(
                select(Programme.valid_until).where(Programme.name == DEMO_PROGRAMME_NAME)
            )
        )
    ).toordinal() - utcnow().date().toordinal() > saved:
        await expect(page.locator(".pn-validity-alert")).to_have_count(0)
