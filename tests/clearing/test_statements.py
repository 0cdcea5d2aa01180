"""Statements read back as JSON, CSV (French spreadsheet conventions) and PDF, to the cent."""

from __future__ import annotations

import asyncio
import csv
import io
import shutil
import subprocess
from datetime import date

import pytest
from sqlalchemy import text

from clearing.batches import close_batch
from clearing.errors import StatementNotFound
from clearing.expiry import close_programme
from clearing.export import Issuer, statement_csv, statement_pdf
from clearing.invoices import statement_cheques
from clearing.statements import get_statement, list_statements
from kit.clock import utcnow
from pass_.enums import DemarcheFamily, Service
from pass_.tokens import Keyring
from tests.clearing.factories import (
    issue_cheques,
    make_scheme,
    make_site,
    paris,
    redeem,
    unique_cutoff,
)

OPERATOR = Issuer(name="Opérateur du Pass numérique", siret="13002603200016",
                  address="20 avenue de Ségur, 75007 Paris")


@pytest.fixture(scope="module")
def keyring(tmp_path_factory: pytest.TempPathFactory) -> Keyring:
    return Keyring.load_or_create(tmp_path_factory.mktemp("clearing-statements") / "keys")


@pytest.fixture(scope="session")
def pdftotext() -> str:
    """poppler's pdftotext, installed on first use if the machine lacks it."""
    found = shutil.which("pdftotext")
    if found is None:
        subprocess.run(["apt-get", "install", "-y", "poppler-utils"], check=True,
                       capture_output=True)
        found = shutil.which("pdftotext")
    assert found, "pdftotext (poppler-utils) is required"
    return found


@pytest.fixture
async def cleared(session, keyring):  # type: ignore[no-untyped-def]
    """12 cheques of 10.03 € at one site (2.5 % commission, 1.5 % fee), in one batch."""
    scheme = await make_scheme(session, keyring, face_value_cents=1003, site_commission_bp=250,
                               financer_fee_bp=150)
    site = await make_site(session, name="Médiathèque « Les Champs Libres » & co")
    services = [Service.creer_courriel, Service.realiser_demarche]
    redemptions = []
    for i, cheque in enumerate(await issue_cheques(session, scheme, 12)):
        redemptions.append(await redeem(
            session, scheme, site, cheque, at=paris(2024, 1, 2 + i, 14, 5),
            service=services[i % 2], family=DemarcheFamily.caf if i % 3 == 0 else None))
    batch, _ = await close_batch(session, cutoff=unique_cutoff(), now=utcnow())
    ids = dict((await session.execute(text(
        "SELECT organisation_id, id FROM statement WHERE batch_id = :b"),
        {"b": batch.id})).all())
    return scheme, site, batch, ids, redemptions


def _pdf_text(pdftotext: str, pdf: bytes, path) -> str:  # type: ignore[no-untyped-def]
    """The PDF's text as pdftotext reads it, whitespace (no-break spaces too) collapsed."""
    path.write_bytes(pdf)
    out = subprocess.run([pdftotext, "-layout", str(path), "-"], check=True,
                         capture_output=True).stdout.decode()
    return " ".join(out.replace("\u00a0", " ").split())


def _french_amount(text_: str) -> int:
    euros, cents = text_.split(",")
    return int(euros) * 100 + int(cents)


async def test_a_site_statement_lists_every_cheque_with_its_totals(session, cleared):
    scheme, site, batch, ids, redemptions = cleared

    read = await get_statement(session, ids[site.id], organisation_id=site.id)

    # 12 × 1003 = 12036; 12036 × 2.5 % = 300.9 → 301; net 11735.
    assert (read.gross_cents, read.fee_cents, read.net_cents, read.cheque_count) == \
        (12036, 301, 11735, 12)
    assert [line.redemption_id for line in read.lines] == [r.id for r in redemptions]
    first = read.lines[0]
    assert first.cheque_serial == redemptions[0].cheque_serial  # type: ignore[union-attr]
    assert first.redeemed_on == date(2024, 1, 2)  # type: ignore[union-attr]
    assert first.service == "creer_courriel" and first.demarche_family == "caf"  # type: ignore[union-attr]
    assert first.programme_id == scheme.id  # type: ignore[union-attr]
    assert read.batch_cutoff == batch.cutoff and read.status == "open"
    assert read.organisation.siret == site.siret
    assert len(read.content_hash) == 64


async def test_statements_are_scoped_to_their_organisation(session, cleared):
    scheme, site, batch, ids, _ = cleared
    state = scheme.financer_id(0)

    own = await list_statements(session, organisation_id=state, batch_id=batch.id)
    assert [s.id for s in own] == [ids[state]]
    with pytest.raises(StatementNotFound):
        await get_statement(session, ids[site.id], organisation_id=state)
    everything = await list_statements(session, organisation_id=None, batch_id=batch.id)
    assert {ids[site.id], ids[state]} <= {s.id for s in everything}


async def test_the_csv_opens_in_a_french_spreadsheet_and_adds_up(session, cleared):
    _scheme, site, _batch, ids, redemptions = cleared
    read = await get_statement(session, ids[site.id], organisation_id=None)

    data = statement_csv(read)

    assert data.startswith(b"\xef\xbb\xbf")  # UTF-8 byte-order mark
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig")), delimiter=";"))
    assert rows[0] == ["N° de chèque", "Date d'encaissement", "Service", "Démarche",
                       "Programme", "Montant (€)"]
    lines = rows[1:13]
    assert [r[0] for r in lines] == [r.cheque_serial for r in redemptions]
    assert lines[0][1] == "02/01/2024" and lines[0][5] == "10,03"
    assert lines[0][2] == "Créer et utiliser une adresse e-mail"
    assert sum(_french_amount(r[5]) for r in lines) == 12036
    assert len(rows) == 13  # one row per cheque, no total line (totals are in the PDF)


async def test_a_financer_csv_has_its_lines_and_amount_due(session, cleared):
    scheme, _site, _batch, ids, _ = cleared
    local = scheme.financer_id(1)
    read = await get_statement(session, ids[local], organisation_id=local)

    cheques = await statement_cheques(session, batch_id=read.batch_id, financer_id=local)
    rows = list(csv.reader(io.StringIO(statement_csv(read, cheques=cheques).decode(
        "utf-8-sig")), delimiter=";"))

    assert rows[0][:2] == ["N° de chèque", "Date d'encaissement"]
    body = rows[1:]
    # One row per cheque and nothing else: the local authority pays 1003 − 501 = 502 per
    # cheque, 12 × 502 = 6024 (the fee and the amount due are in the PDF).
    assert len(body) == 12 and len({r[0] for r in body}) == 12
    assert all(r[0].startswith("PN-") and r[9].startswith("PN-") for r in body)
    assert sum(_french_amount(r[8]) for r in body) == 6024
    assert {_french_amount(r[7]) for r in body} == {1003}


async def test_a_formula_in_a_name_stays_text_in_the_csv(session, cleared):
    _scheme, site, _batch, ids, _ = cleared
    await session.execute(text("UPDATE programme SET name = '=HYPERLINK(1)' WHERE id = "
                               "(SELECT programme_id FROM redemption WHERE site_id = :s "
                               "LIMIT 1)"), {"s": site.id})
    read = await get_statement(session, ids[site.id], organisation_id=None)

    rows = list(csv.reader(io.StringIO(statement_csv(read).decode("utf-8-sig")), delimiter=";"))

    assert rows[1][4] == "'=HYPERLINK(1)"


async def test_the_pdf_shows_the_parties_the_totals_and_the_fingerprint(
        session, cleared, pdftotext, tmp_path):
    _scheme, site, batch, ids, _ = cleared
    read = await get_statement(session, ids[site.id], organisation_id=None)

    pdf = statement_pdf(read, issuer=OPERATOR, generated_at=utcnow())

    flat = await asyncio.to_thread(_pdf_text, pdftotext, pdf, tmp_path / "releve.pdf")
    for expected in ("120,36 €", "3,01 €", "117,35 €", f"Relevé n° {read.id}",
                     f"SIRET {site.siret}", "SIRET 13002603200016", f"n° {batch.id}",
                     "Médiathèque « Les Champs Libres » & co", "à payer",
                     read.content_hash[:32]):
        assert expected in flat, expected


async def test_a_credit_note_returns_the_unused_commitment(session, cleared, pdftotext,
                                                           tmp_path):
    scheme, *_ = cleared
    closed = await close_programme(session, programme_id=scheme.id, today=date(2025, 2, 8),
                                   now=utcnow())
    state = scheme.financer_id(0)
    [note] = [n for n in await list_statements(session, organisation_id=state)
              if n.kind == "credit_note"]
    read = await get_statement(session, note.id, organisation_id=state)

    # The State committed 5000.00 € and paid 12 × 501 = 6012: 493 988 cents come back.
    assert read.net_cents == 500_000 - 12 * 501
    assert note.id in closed.credit_note_ids
    rows = list(csv.reader(io.StringIO(statement_csv(read).decode("utf-8-sig")), delimiter=";"))
    assert rows[1:] == [[rows[1][0], "", "", "0", "4939,88"]]  # its one line, no total row
    flat = await asyncio.to_thread(
        _pdf_text, pdftotext, statement_pdf(read, issuer=OPERATOR, generated_at=utcnow()),
        tmp_path / "avoir.pdf")
    assert "4 939,88 €" in flat


async def test_a_financer_statement_to_pay_says_how_to_pay_each_invoice(
        session, cleared, pdftotext, tmp_path):
    from clearing.export import ToPay
    from clearing.invoices import statement_invoices

    scheme, _site, _batch, ids, _ = cleared
    local = scheme.financer_id(1)
    read = await get_statement(session, ids[local], organisation_id=local)
    billed = await statement_invoices(session, read.id)
    assert len(billed) == 1
    to_pay = [ToPay(number=i.number, total_cents=i.total_cents, due_date=i.due_date,
                    reference=i.payment_reference, iban=i.seller["iban"],
                    bic=i.seller.get("bic")) for i in billed]

    pdf = statement_pdf(read, issuer=OPERATOR, generated_at=utcnow(), to_pay=to_pay)

    flat = await asyncio.to_thread(_pdf_text, pdftotext, pdf, tmp_path / "a-regler.pdf")
    invoice = billed[0]
    for expected in ("Comment régler", invoice.number, invoice.payment_reference,
                     invoice.due_date.strftime("%d/%m/%Y"), invoice.seller["iban"],
                     "une ligne par chèque"):
        assert expected in flat, expected
