"""The mediator's scan page in a real browser: camera scan, offline queue and sync."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.async_api import Browser, BrowserContext, expect
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from api.seed import DEMO_PASSWORD
from tests.e2e.conftest import (
    CHROMIUM_ARGS,
    DEMO_SITE_MEDIATOR,
    PHONE,
    ensure_chromium,
    login,
    qr_video,
)


def live_redemptions(db: Any, serial: str):  # type: ignore[no-untyped-def]
    async def count(session: AsyncSession) -> int:
        return int(
            await session.scalar(
                text(
                    "SELECT count(*) FROM redemption r JOIN cheque c ON c.id = r.cheque_id "
                    "WHERE c.serial = :serial AND r.reversed_at IS NULL"
                ),
                {"serial": serial},
            )
        )

    return db(count)


async def test_a_cheque_shown_to_the_phone_camera_is_redeemed(
    browser: Browser, live_server: str, issue_cheques: Any, db: Any, tmp_path: Path
) -> None:
    cheque = (await issue_cheques(5))[0]
    video = qr_video(cheque.token, tmp_path / "cheque.y4m")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        camera_browser = await pw.chromium.launch(
            executable_path=ensure_chromium(),
            headless=True,
            args=[
                *CHROMIUM_ARGS,
                "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream",
                f"--use-file-for-fake-video-capture={video}",
            ],
        )
        context = await camera_browser.new_context(
            base_url=live_server, locale="fr-FR", viewport=PHONE, permissions=["camera"]
        )
        page = await context.new_page()
        await login(page, DEMO_SITE_MEDIATOR, DEMO_PASSWORD)
        await expect(page.get_by_role("heading", name="Scanner un chèque")).to_be_visible()
        await page.get_by_text("Réaliser une démarche en ligne", exact=True).click()
        await page.locator("#choix-demarche summary").click()
        await page.get_by_text("CAF (allocations familiales)", exact=True).click()
        await page.get_by_role("button", name="Scanner avec la caméra").click()
        result = page.locator("#resultat")
        await expect(result).to_contain_text("Chèque encaissé — 10 €", timeout=20_000)
        await expect(result).to_contain_text(cheque.serial)
        await camera_browser.close()
    assert await live_redemptions(db, cheque.serial) == 1


async def test_scans_made_offline_are_queued_then_synced_once(
    context: BrowserContext, issue_cheques: Any, db: Any
) -> None:
    """Issue 16 item 3: the same serial typed twice offline is caught at once, queued once."""
    cheque = (await issue_cheques(5))[1]
    page = await context.new_page()
    await login(page, DEMO_SITE_MEDIATOR, DEMO_PASSWORD)
    await expect(page.locator("#scanner[data-offline-ready=true]")).to_be_attached()

    await context.set_offline(True)
    await page.reload()  # served by the service worker
    await expect(page.get_by_role("heading", name="Scanner un chèque")).to_be_visible()
    await expect(page.locator("#etat-reseau")).to_contain_text("Hors ligne")
    await page.get_by_text("Créer et utiliser une adresse e-mail", exact=True).click()
    await page.get_by_label("Numéro du chèque").fill(cheque.serial.lower())
    await page.get_by_role("button", name="Encaisser le chèque").click()
    await expect(page.locator("#resultat")).to_contain_text("Chèque à synchroniser")
    await expect(page.locator("#resultat")).to_contain_text(cheque.serial)
    await expect(page.locator("#nombre-a-synchroniser")).to_have_text("1")
    # The same cheque typed again, another way (spaces, no dashes): told at once, not queued.
    await page.get_by_label("Numéro du chèque").fill(cheque.serial.replace("-", " "))
    await page.get_by_role("button", name="Encaisser le chèque").click()
    await expect(page.locator("#resultat")).to_contain_text(
        "Chèque déjà dans la liste à synchroniser"
    )
    await expect(page.locator("#resultat")).to_contain_text(cheque.serial)
    await expect(page.locator("#nombre-a-synchroniser")).to_have_text("1")
    assert await live_redemptions(db, cheque.serial) == 0

    await context.set_offline(False)
    report = page.locator("#rapport-synchronisation")
    await expect(report).to_contain_text("Synchronisation terminée (1 chèque)")
    await expect(report).to_contain_text(f"{cheque.serial} — encaissé — 10 €")
    await expect(report).not_to_contain_text("refusé")
    await expect(page.locator("#a-synchroniser")).to_be_hidden()
    assert await live_redemptions(db, cheque.serial) == 1
