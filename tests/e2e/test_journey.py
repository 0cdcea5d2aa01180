"""The whole journey in a browser, through the pages only: the operator sets up a territory,
an agent issues a booklet and opens its PDF, a mediator redeems a cheque by typing its serial,
the operator closes a batch and the financer sees its statement."""

from __future__ import annotations

import uuid
from typing import Any

from playwright.async_api import Page, expect
from sqlalchemy.ext.asyncio import AsyncSession

from pass_ import accounts
from pass_.enums import OrganisationKind, Role
from pass_.schemas import UserCreate
from tests.e2e.conftest import assert_accessible, login, logout
from tests.factories import make_org, unique_siret

PASSWORD = "journee-complete-2026"


async def create_organisation(page: Page, kind: str, name: str, **fields: str) -> None:
    await page.goto("/operateur/organisations/nouvelle")
    await page.get_by_role("combobox", name="Type d'organisation").select_option(label=kind)
    await page.get_by_role("textbox", name="Nom", exact=True).fill(name)
    await page.get_by_role("textbox", name="SIRET").fill(unique_siret())
    await page.locator("#champ-commune_insee").fill("35238")  # a combobox once suggested
    if "category" in fields:
        await page.get_by_role("combobox", name="Catégorie de financeur").select_option(
            label=fields["category"]
        )
    if "iban" in fields:
        await page.get_by_role("textbox", name="IBAN").fill(fields["iban"])
    await page.get_by_role("button", name="Créer l'organisation").click()
    await expect(page.get_by_role("heading", level=1, name=name)).to_be_visible()


async def create_account(page: Page, email: str) -> None:
    await page.get_by_role("textbox", name="Adresse e-mail").fill(email)
    await page.get_by_label("Mot de passe provisoire").fill(PASSWORD)
    await page.get_by_role("button", name="Créer le compte").click()
    await expect(page.get_by_text(f"Compte {email} créé")).to_be_visible()


async def test_operator_agent_mediator_and_financer_journey(page: Page, db: Any) -> None:
    tag = uuid.uuid4().hex[:6]
    admin = f"admin-{tag}@operateur.fr"

    async def bootstrap(session: AsyncSession) -> None:
        operator = await make_org(session, OrganisationKind.operator, name=f"Opérateur {tag}")
        await accounts.create_user(
            session,
            UserCreate(
                email=admin,
                password=PASSWORD,
                organisation_id=operator.id,  # type: ignore[arg-type]
                role=Role.operator_admin,
            ),
        )

    await db(bootstrap)

    # The operator sets up the territory: organisations, accounts, qualification, programme.
    await login(page, admin, PASSWORD)
    await expect(page.get_by_role("heading", name="Accueil opérateur")).to_be_visible()
    state, dept = f"État {tag}", f"Département {tag}"
    ccas, site = f"CCAS {tag}", f"Médiathèque {tag}"
    await create_organisation(page, "Financeur", state, category="État")
    await create_account(page, f"etat-{tag}@exemple.fr")
    await create_organisation(page, "Financeur", dept, category="Département")
    await create_account(page, f"dept-{tag}@exemple.fr")
    await create_organisation(page, "Structure prescriptrice", ccas)
    await create_account(page, f"agent-{tag}@exemple.fr")
    await create_organisation(
        page, "Lieu de médiation numérique", site, iban="FR7630006000011234567890189"
    )
    await assert_accessible(page)
    await create_account(page, f"mediateur-{tag}@exemple.fr")

    await page.goto("/operateur/qualification")
    await assert_accessible(page)
    await page.get_by_role("button", name=f"Qualifier : {site}").click()
    await expect(page.get_by_text(f"« {site} » est qualifié")).to_be_visible()

    await page.goto("/operateur/programmes/nouveau")
    await assert_accessible(page)
    programme = f"Pass numérique {tag}"
    await page.get_by_role("textbox", name="Nom du programme").fill(programme)
    await page.get_by_role("textbox", name="Territoire").fill("35")
    first, second = (
        page.get_by_role("group", name="Financeur 1"),
        page.get_by_role("group", name="Financeur 2"),
    )
    await first.get_by_role("combobox", name="Organisation").select_option(label=state)
    await first.get_by_role("combobox", name="Rôle").select_option(value="state")
    await first.get_by_role("textbox", name="Engagement (€)").fill("5 000")
    await second.get_by_role("combobox", name="Organisation").select_option(label=dept)
    await second.get_by_role("combobox", name="Rôle").select_option(value="local")
    await second.get_by_role("textbox", name="Engagement (€)").fill("5000")
    issuer = page.get_by_role("group", name="Structure 1")
    await issuer.get_by_role("combobox", name="Organisation").select_option(label=ccas)
    await issuer.get_by_role("textbox", name="Quota (nombre de chèques)").fill("100")
    await page.get_by_role("button", name="Créer le programme").click()
    await expect(page.get_by_role("heading", level=1, name=programme)).to_be_visible()
    await expect(page.get_by_text("Capacité d'émission")).to_be_visible()
    await expect(page.locator(".pn-kpi").first).to_contain_text("10\u202f000,00\u00a0€")
    await assert_accessible(page)
    await logout(page)

    # The CCAS agent registers a person, issues a booklet and opens its PDF.
    await login(page, f"agent-{tag}@exemple.fr", PASSWORD)
    await page.get_by_role("link", name="Émettre un carnet").click()
    await page.get_by_role("textbox", name="Référence", exact=True).fill(f"DOSSIER-{tag}")
    await page.get_by_text("1 — Urgence numérique").click()
    await page.get_by_role("button", name="Enregistrer le bénéficiaire").click()
    await expect(
        page.get_by_role("heading", name=f"Bénéficiaire « DOSSIER-{tag} »")
    ).to_be_visible()
    await page.get_by_text("10 chèques").click()
    await page.get_by_role("button", name="Émettre le carnet").click()
    pdf_link = page.get_by_role("link", name="Ouvrir le PDF à imprimer")
    await expect(pdf_link).to_be_visible()
    await assert_accessible(page)
    async with page.context.expect_page() as popup:
        await pdf_link.click()
    pdf_page = await popup.value
    pdf = await page.request.get(pdf_page.url)
    assert pdf.status == 200 and pdf.headers["content-type"] == "application/pdf"
    assert (await pdf.body()).startswith(b"%PDF")
    await pdf_page.close()
    serial = (await page.locator("table code").first.inner_text()).strip()
    assert serial.startswith("PN-")
    await logout(page)

    # The mediator types the serial: a large green confirmation.
    await login(page, f"mediateur-{tag}@exemple.fr", PASSWORD)
    await page.get_by_text("Réaliser une démarche en ligne", exact=True).click()
    await page.locator("#choix-demarche summary").click()  # the démarches are folded
    await page.get_by_text("Impôts (DGFiP)", exact=True).click()
    await page.get_by_label("Numéro du chèque").fill(serial)
    await page.get_by_role("button", name="Encaisser le chèque").click()
    result = page.locator("#resultat .pn-result--ok")
    await expect(result).to_contain_text("Chèque encaissé — 10 €")
    await page.goto("/mediateur/encaissements")
    await expect(page.get_by_text(serial, exact=True)).to_be_visible()
    undo = page.get_by_role("button", name=f"Annuler l'encaissement du chèque {serial}")
    await expect(undo).to_be_visible()  # within the 24-hour window
    await assert_accessible(page)
    await logout(page)

    # The operator closes a batch now; the site and the financers get their statements.
    await login(page, admin, PASSWORD)
    await page.goto("/operateur/compensation")
    await page.get_by_text("Maintenant", exact=False).click()
    await page.get_by_role("button", name="Voir l'aperçu").click()
    await page.get_by_role("button", name="Clore le lot").click()
    await expect(page.get_by_role("heading", name="Lot de compensation n°")).to_be_visible()
    await expect(page.get_by_role("row").filter(has_text=site)).to_contain_text("10,00")
    await assert_accessible(page)
    async with page.expect_download() as download:
        await page.get_by_role("button", name="Télécharger le fichier de virements SEPA").click()
    sepa = (await (await download.value).path()).read_text()
    assert "pain.001.001.03" in sepa and "FR7630006000011234567890189" in sepa
    await logout(page)

    await login(page, f"dept-{tag}@exemple.fr", PASSWORD)
    await page.goto("/financeur/releves")
    await assert_accessible(page)
    await page.get_by_role("link", name="N°").first.click()
    await expect(page.get_by_role("heading", name="Relevé n°")).to_be_visible()
    lines = page.get_by_role("row").filter(has_text=programme)
    await expect(lines.first).to_contain_text("5,00")  # half of 10 €: the State pays 50 %
    await expect(page.get_by_text("À régler")).to_be_visible()
    await assert_accessible(page)
    for name, kind, start in (("CSV", "text/csv", b""), ("PDF", "application/pdf", b"%PDF")):
        link = page.get_by_role("link", name=f"Télécharger le {name}")
        answer = await page.request.get(await link.get_attribute("href") or "")
        assert answer.status == 200 and answer.headers["content-type"].startswith(kind)
        assert (await answer.body()).startswith(start)
    await logout(page)
