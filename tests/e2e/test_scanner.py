"""Issue 16, the scanner as its users found it (items 1–5, 11, 14, and issue 15's booklet cover),
in Debian's Chromium at phone width; camera scenarios read a fake video of a real QR code."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from playwright.async_api import BrowserContext, Page, async_playwright, expect

from api.seed import DEMO_PASSWORD
from tests.e2e.conftest import (
    CHROMIUM_ARGS,
    DEMO_SITE_MEDIATOR,
    PHONE,
    assert_accessible,
    ensure_chromium,
    login,
    qr_video,
    screenshot,
)
from tests.e2e.test_mediator import live_redemptions


@asynccontextmanager
async def camera_page(live_server: str, video: Path) -> AsyncIterator[tuple[BrowserContext, Page]]:
    """A phone-sized page whose camera films `video` (Chromium's fake capture device)."""
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=ensure_chromium(),
            headless=True,
            args=[
                *CHROMIUM_ARGS,
                "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream",
                f"--use-file-for-fake-video-capture={video}",
            ],
        )
        context = await browser.new_context(
            base_url=live_server, locale="fr-FR", viewport=PHONE, permissions=["camera"]
        )
        context.set_default_timeout(15_000)
        page = await context.new_page()
        try:
            yield context, page
        finally:
            await browser.close()


def redeem_posts(page: Page) -> list[str]:
    """URLs of the redemption requests the page sends from now on."""
    seen: list[str] = []
    page.on(
        "request",
        lambda r: (
            seen.append(r.url)
            if r.method == "POST" and ("/mediateur/encaisser" in r.url or "/redemptions" in r.url)
            else None
        ),
    )
    return seen


async def test_a_good_camera_scan_stops_the_camera_and_never_turns_red(
    live_server: str, issue_cheques: Any, db: Any, tmp_path: Path
) -> None:
    """Item 1 (online) and item 11: the cheque stays in front of the camera after « encaissé »."""
    cheque = (await issue_cheques(5))[0]
    async with camera_page(live_server, qr_video(cheque.token, tmp_path / "c.y4m")) as (_, page):
        await login(page, DEMO_SITE_MEDIATOR, DEMO_PASSWORD)
        posts = redeem_posts(page)
        await page.get_by_text("Réaliser une démarche en ligne", exact=True).click()
        await page.locator("#choix-demarche summary").click()
        await page.get_by_text("CAF (allocations familiales)", exact=True).click()
        await page.get_by_role("button", name="Scanner avec la caméra").click()
        result = page.locator("#resultat")
        await expect(result).to_contain_text("Chèque encaissé — 10 €", timeout=20_000)
        # One bracket pair only: « démarche : CAF (allocations familiales) ».
        await expect(result).to_contain_text("démarche : CAF (allocations familiales).")
        assert "((" not in (await result.inner_text())
        await expect(page.locator("#camera")).to_be_hidden()  # stopped after the read
        assert await page.evaluate("document.getElementById('video-camera').srcObject") is None
        next_button = page.get_by_role("button", name="Chèque suivant")
        await expect(next_button).to_be_visible()
        await screenshot(page, "mediateur-camera-encaisse")
        # The same cheque is still in front of the lens when the camera opens again: ignored.
        await next_button.click()
        await expect(page.locator("#etat-camera")).to_contain_text(
            "vient d'être scanné : présentez le chèque suivant", timeout=20_000
        )
        await expect(result).to_contain_text("Chèque encaissé — 10 €")
        await expect(result).not_to_contain_text("déjà encaissé")
        assert len(posts) == 1, posts
        # Item 5: stopping the camera leaves no stale « Caméra ouverte… ».
        await page.get_by_role("button", name="Arrêter la caméra").click()
        await expect(page.locator("#camera")).to_be_hidden()
        await expect(page.locator("#etat-camera")).not_to_contain_text("Caméra ouverte")
        await expect(page.locator("#etat-camera")).to_have_text("Caméra arrêtée.")
    assert await live_redemptions(db, cheque.serial) == 1


async def test_offline_camera_scans_show_the_serial_and_queue_a_cheque_once(
    live_server: str, issue_cheques: Any, db: Any, tmp_path: Path
) -> None:
    """Items 1 (offline), 2 and 14: the serial, not « QR code PN1:… », in result, queue, report."""
    cheque = (await issue_cheques(5))[2]
    async with camera_page(live_server, qr_video(cheque.token, tmp_path / "c.y4m")) as (
        context,
        page,
    ):
        await login(page, DEMO_SITE_MEDIATOR, DEMO_PASSWORD)
        await expect(page.locator("#scanner[data-offline-ready=true]")).to_be_attached()
        posts = redeem_posts(page)
        await page.get_by_text("Naviguer sur internet", exact=True).click()
        await context.set_offline(True)
        await expect(page.locator("#etat-reseau")).to_contain_text("Hors ligne")
        await page.get_by_role("button", name="Scanner avec la caméra").click()
        result = page.locator("#resultat")
        await expect(result).to_contain_text("Chèque à synchroniser", timeout=20_000)
        await expect(result).to_contain_text(cheque.serial)
        await expect(result).not_to_contain_text("PN1:")
        queue = page.locator("#liste-a-synchroniser")
        await expect(queue).to_contain_text(cheque.serial)
        await expect(queue).not_to_contain_text("QR code")
        # Item 14: the status icon is a DSFR SVG icon, not an emoji a phone may lack.
        icon = await page.evaluate(
            "() => { const s = getComputedStyle(document.querySelector('.pn-result__title'),"
            " '::before'); return [s.content, s.maskImage || s.webkitMaskImage]; }"
        )
        assert icon[0] in ('""', "none") and "time-line.svg" in icon[1], icon
        await screenshot(page, "mediateur-hors-ligne-camera")
        await page.get_by_role("button", name="Chèque suivant").click()
        await expect(page.locator("#etat-camera")).to_contain_text(
            "vient d'être scanné", timeout=20_000
        )
        await expect(page.locator("#nombre-a-synchroniser")).to_have_text("1")
        await page.get_by_role("button", name="Arrêter la caméra").click()

        await context.set_offline(False)
        report = page.locator("#rapport-synchronisation")
        await expect(report).to_contain_text("Synchronisation terminée (1 chèque)")
        await expect(report).to_contain_text(f"{cheque.serial} — encaissé — 10 €")
        await expect(report).not_to_contain_text("refusé")
        assert len(posts) == 1, posts  # the one batch
    assert await live_redemptions(db, cheque.serial) == 1


async def test_the_booklet_cover_qr_is_answered_without_a_request_online_and_offline(
    live_server: str, issue_cheques: Any, db: Any, tmp_path: Path
) -> None:
    """Issue 15: the cover's QR (a /mon-pass/<number> address) is not a cheque."""
    await issue_cheques(5)
    cover = qr_video(f"{live_server}/mon-pass/CN-7K3Q-9ZD2", tmp_path / "cover.y4m")
    async with camera_page(live_server, cover) as (context, page):
        await login(page, DEMO_SITE_MEDIATOR, DEMO_PASSWORD)
        await expect(page.locator("#scanner[data-offline-ready=true]")).to_be_attached()
        posts = redeem_posts(page)
        await page.get_by_text("Écrire un document", exact=True).click()
        result = page.locator("#resultat")
        for offline in (False, True):
            await context.set_offline(offline)
            await page.evaluate("document.getElementById('resultat').innerHTML = ''")
            await page.get_by_role("button", name="Scanner avec la caméra").click()
            await expect(result).to_contain_text(
                "C'est le QR code du carnet : scannez un chèque", timeout=20_000
            )
            await expect(page.locator("#a-synchroniser")).to_be_hidden()
            if not offline:
                await assert_accessible(page)
                await screenshot(page, "mediateur-qr-carnet")
            await page.get_by_role("button", name="Arrêter la caméra").click()
        assert posts == []
        # Typed (or pasted) too.
        await page.get_by_label("Numéro du chèque").fill("CN-7K3Q-9ZD2")
        await page.get_by_role("button", name="Encaisser le chèque").click()
        await expect(result).to_contain_text("C'est le QR code du carnet")
        assert posts == []


async def test_at_phone_width_the_camera_comes_first_and_the_choices_are_remembered(
    page: Page, issue_cheques: Any
) -> None:
    """Item 4: the camera button above the fold at 360 px, démarches folded, choices kept."""
    await issue_cheques(5)
    await login(page, DEMO_SITE_MEDIATOR, DEMO_PASSWORD)
    camera = page.get_by_role("button", name="Scanner avec la caméra")
    await expect(camera).to_be_visible()
    box = await camera.bounding_box()
    assert box is not None and box["y"] + box["height"] <= PHONE["height"], box
    impots = page.locator("label[for=demarche-impots]")
    await expect(impots).to_be_hidden()  # folded
    await page.get_by_text("Accéder aux services en ligne", exact=True).click()
    await page.locator("#choix-demarche summary").click()
    await impots.click()  # one tap, and it folds again
    await expect(impots).to_be_hidden()
    await expect(page.locator("#resume-demarche")).to_have_text("Impôts (DGFiP)")

    await page.reload()
    await expect(page.locator("#service-acceder_services_en_ligne")).to_be_checked()
    await expect(page.locator("#demarche-impots")).to_be_checked()
    await expect(page.locator("#resume-demarche")).to_have_text("Impôts (DGFiP)")
    box = await page.get_by_role("button", name="Scanner avec la caméra").bounding_box()
    assert box is not None and box["y"] + box["height"] <= PHONE["height"], box
    await assert_accessible(page)
    await screenshot(page, "mediateur-scan-360")


async def test_a_cheque_read_before_the_service_is_chosen_waits_then_is_redeemed_once(
    live_server: str, issue_cheques: Any, db: Any, tmp_path: Path
) -> None:
    """Item 1 again: read first, service chosen after, then the camera reopened on it."""
    cheque = (await issue_cheques(5))[3]
    async with camera_page(live_server, qr_video(cheque.token, tmp_path / "c.y4m")) as (_, page):
        await login(page, DEMO_SITE_MEDIATOR, DEMO_PASSWORD)
        posts = redeem_posts(page)
        await page.get_by_role("button", name="Scanner avec la caméra").click()
        result = page.locator("#resultat")
        await expect(result).to_contain_text("Choisissez le service rendu", timeout=20_000)
        await expect(page.locator("#etat-camera")).to_contain_text("Chèque lu")
        assert posts == []
        await page.get_by_text("Connaître ses droits", exact=True).click()
        await page.get_by_role("button", name="Encaisser le chèque").click()
        await expect(result).to_contain_text("Chèque encaissé — 10 €")
        await page.get_by_role("button", name="Chèque suivant").click()
        await expect(page.locator("#etat-camera")).to_contain_text(
            "vient d'être scanné", timeout=20_000
        )
        await expect(result).to_contain_text("Chèque encaissé — 10 €")
        assert len(posts) == 1, posts
    assert await live_redemptions(db, cheque.serial) == 1
