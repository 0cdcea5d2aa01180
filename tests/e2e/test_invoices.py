"""Issue 16, item 7 (and issue 14's financer pages) in Chromium at 360 px: a financer's
statement « À régler » says how to pay — each invoice's amount, due date, IBAN, BIC and RF
reference — on the page and in its PDF; the CSV files hold one row per cheque and no total
line (the site's and the financer's); the invoices page offers the Factur-X PDF; axe finds no
serious or critical violation on the pages involved."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import facturx
from playwright.async_api import Page, expect
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from clearing.batches import close_batch
from clearing.invoices import InvoiceTerms, Seller
from kit.clock import utcnow
from pass_ import accounts
from pass_.enums import DemarcheFamily, OrganisationKind, Role
from pass_.schemas import UserCreate
from pass_.tokens import Keyring
from tests.clearing.factories import (
    issue_cheques,
    make_scheme,
    make_site,
    paris,
    redeem,
)
from tests.e2e.conftest import assert_accessible, login, logout
from tests.factories import make_org

PASSWORD = "factures-2026-essai"
SELLER = Seller(name="Opérateur du Pass numérique", siret="13002603200016",
                iban="FR7630006000011234567890189", bic="AGRIFRPP")


def _pdf_text(pdf: bytes, path: Path) -> str:
    found = shutil.which("pdftotext")
    if found is None:
        subprocess.run(["apt-get", "install", "-y", "poppler-utils"], check=True,
                       capture_output=True)
        found = shutil.which("pdftotext")
    assert found
    path.write_bytes(pdf)
    out = subprocess.run([found, "-layout", str(path), "-"], check=True,
                         capture_output=True).stdout.decode()
    return " ".join(out.replace("\u00a0", " ").split())


def _rows(body: bytes) -> list[list[str]]:
    assert body.startswith(b"\xef\xbb\xbf")
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig")), delimiter=";"))


async def test_a_statement_to_pay_says_how_and_csv_files_have_one_row_per_cheque(
        page: Page, db: Any, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    keyring = Keyring.load_or_create(tmp_path / "keys")

    async def scene(session: AsyncSession) -> dict[str, Any]:
        scheme = await make_scheme(session, keyring, financer_fee_bp=150)
        site = await make_site(session, name=f"Médiathèque {tag}")
        for i, cheque in enumerate(await issue_cheques(session, scheme, 4)):
            await redeem(session, scheme, site, cheque, at=paris(2024, 1, 5 + i),
                         family=DemarcheFamily.caf if i % 2 else None)
        # Now, as the other browser tests close theirs: a cutoff before the last batch's is
        # refused, and these tests share one committed database.
        batch, _ = await close_batch(session, cutoff=utcnow(), now=utcnow(),
                                     invoice_terms=InvoiceTerms(seller=SELLER))
        dept = scheme.financers[1]
        for email, org, role in ((f"dept-{tag}@exemple.fr", dept, Role.financer),
                                 (f"mediateur-{tag}@exemple.fr", site, Role.site_mediator)):
            await accounts.create_user(session, UserCreate(
                email=email, password=PASSWORD, organisation_id=org.id, role=role))
        operator = await make_org(session, OrganisationKind.operator, name=f"Opérateur {tag}")
        await accounts.create_user(session, UserCreate(
            email=f"admin-{tag}@exemple.fr", password=PASSWORD,
            organisation_id=operator.id, role=Role.operator_admin))  # type: ignore[arg-type]
        invoice = (await session.execute(text(
            "SELECT number, payment_reference, total_cents, due_date, id FROM invoice "
            "WHERE batch_id = :b AND financer_id = :f"),
            {"b": batch.id, "f": dept.id})).one()
        statements = dict((await session.execute(text(
            "SELECT organisation_id, id FROM statement WHERE batch_id = :b"),
            {"b": batch.id})).all())
        return {"invoice": invoice, "dept_statement": statements[dept.id],
                "site_statement": statements[site.id]}

    made = await db(scene)
    number, reference, total, due, _invoice_id = made["invoice"]

    # The financer opens its statement « À régler »: how to pay, on the page.
    await login(page, f"dept-{tag}@exemple.fr", PASSWORD)
    await page.goto(f"/financeur/releves/{made['dept_statement']}")
    await expect(page.get_by_text("À régler").first).to_be_visible()
    await expect(page.get_by_role("heading", name="Comment régler")).to_be_visible()
    await expect(page.get_by_text(reference, exact=True)).to_be_visible()
    await expect(page.get_by_text("FR7630006000011234567890189").first).to_be_visible()
    await expect(page.get_by_text("AGRIFRPP").first).to_be_visible()
    await expect(page.get_by_text(due.strftime("%d/%m/%Y")).first).to_be_visible()
    await assert_accessible(page)

    # Its CSV: one row per cheque, nothing else.
    link = page.get_by_role("link", name="Télécharger le CSV")
    answer = await page.request.get(await link.get_attribute("href") or "")
    rows = _rows(await answer.body())
    assert rows[0][0] == "N° de chèque" and len(rows) == 1 + 4
    assert all(r[0].startswith("PN-") and r[-1] == number for r in rows[1:])
    assert not any(r[0].startswith(("Total", "Frais", "Montant")) for r in rows)

    # Its PDF says the same as the page: where, how much, by when, which reference.
    link = page.get_by_role("link", name="Télécharger le PDF")
    pdf = await (await page.request.get(await link.get_attribute("href") or "")).body()
    flat = _pdf_text(pdf, tmp_path / "releve.pdf")
    for expected in ("Comment régler", number, reference, due.strftime("%d/%m/%Y"),
                     "FR7630006000011234567890189", "AGRIFRPP", "une ligne par chèque"):
        assert expected in flat, expected

    # The invoices page: status, how to pay, the Factur-X PDF.
    await page.goto("/financeur/factures")
    card = page.locator(".pn-invoice").filter(has_text=number)
    await expect(card).to_contain_text("émise")
    await expect(card).to_contain_text(reference)
    download = card.get_by_role("link", name=f"Télécharger la facture {number}")
    answer = await page.request.get(await download.get_attribute("href") or "")
    _name, xml = facturx.get_xml_from_pdf(await answer.body(), check_xsd=True)
    assert reference.encode() in xml
    await assert_accessible(page)
    await page.set_viewport_size({"width": 1280, "height": 900})
    await assert_accessible(page)
    await page.set_viewport_size({"width": 360, "height": 780})
    await logout(page)

    # The site's CSV: its cheques, no total lines.
    await login(page, f"mediateur-{tag}@exemple.fr", PASSWORD)
    await page.goto(f"/mediateur/releves/{made['site_statement']}")
    link = page.get_by_role("link", name="Télécharger le CSV")
    rows = _rows(await (await page.request.get(await link.get_attribute("href") or "")).body())
    assert len(rows) == 1 + 4 and all(r[0].startswith("PN-") for r in rows[1:])
    assert all(r for r in rows)  # no blank separator line either
    await logout(page)

    # The operator's invoice page reads at 360 px, accessible.
    await login(page, f"admin-{tag}@exemple.fr", PASSWORD)
    await page.goto("/operateur/factures")
    await expect(page.get_by_role("heading", name="Importer un relevé bancaire")).to_be_visible()
    await assert_accessible(page)

