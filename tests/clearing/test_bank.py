"""Bank reconciliation (issue 14): camt.053 / camt.054 credits matched to invoices by RF
reference, exact → paid with its journal entry, partial and over-payments shown and never
applied, suggestions by amount and payer IBAN confirmed by the operator, the same file twice
changing nothing; the audit's invoice checks see a paid invoice without its bank line."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import text

from clearing import bank
from clearing.batches import close_batch
from clearing.invoices import list_invoices
from clearing.invoices_audit import audit_invoices
from kit.clock import utcnow
from pass_.tokens import Keyring
from tests.clearing.factories import (
    issue_cheques,
    make_scheme,
    make_site,
    paris,
    redeem,
    unique_cutoff,
)

PAYER_IBAN = "FR7630004000031234567890143"


def camt054(credits: list[dict[str, str]], *, message_id: str = "MSG-1",
            version: str = "08") -> bytes:
    """A camt.054 notification of credits, as a French bank sends them."""
    entries = []
    for i, c in enumerate(credits):
        strd = (f"<Strd><CdtrRefInf><Tp><CdOrPrtry><Cd>SCOR</Cd></CdOrPrtry></Tp>"
                f"<Ref>{c['ref']}</Ref></CdtrRefInf></Strd>" if c.get("ref") else "")
        ustrd = f"<Ustrd>{c['text']}</Ustrd>" if c.get("text") else ""
        entries.append(f"""
      <Ntry>
        <Amt Ccy="EUR">{c['amount']}</Amt><CdtDbtInd>{c.get('side', 'CRDT')}</CdtDbtInd>
        <Sts><Cd>BOOK</Cd></Sts><BookgDt><Dt>2024-03-0{i + 1}</Dt></BookgDt>
        <AcctSvcrRef>{message_id}-{i}</AcctSvcrRef>
        <NtryDtls><TxDtls>
          <Refs><AcctSvcrRef>{c.get('bank_ref', f'{message_id}-TX-{i}')}</AcctSvcrRef>
                <EndToEndId>NOTPROVIDED</EndToEndId></Refs>
          <Amt Ccy="EUR">{c['amount']}</Amt>
          <RltdPties><Dbtr><Pty><Nm>{c.get('payer', 'Département')}</Nm></Pty></Dbtr>
            <DbtrAcct><Id><IBAN>{c.get('iban', 'FR7610107001011234567890129')}</IBAN></Id>
            </DbtrAcct></RltdPties>
          <RmtInf>{ustrd}{strd}</RmtInf>
        </TxDtls></NtryDtls>
      </Ntry>""")
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.054.001.{version}">
  <BkToCstmrDbtCdtNtfctn>
    <GrpHdr><MsgId>{message_id}</MsgId><CreDtTm>2024-03-05T08:00:00</CreDtTm></GrpHdr>
    <Ntfctn><Id>N-{message_id}</Id>
      <Acct><Id><IBAN>FR7630006000011234567890189</IBAN></Id></Acct>{''.join(entries)}
    </Ntfctn>
  </BkToCstmrDbtCdtNtfctn>
</Document>""".encode()


def _euros(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


@pytest.fixture(scope="module")
def keyring(tmp_path_factory: pytest.TempPathFactory) -> Keyring:
    return Keyring.load_or_create(tmp_path_factory.mktemp("clearing-bank") / "keys")


@pytest.fixture
async def invoices_of_a_batch(session, keyring):  # type: ignore[no-untyped-def]
    scheme = await make_scheme(session, keyring, financer_fee_bp=100)
    await session.execute(text("UPDATE organisation SET iban = :iban WHERE id = :id"),
                          {"iban": PAYER_IBAN, "id": scheme.financer_id(0)})
    site = await make_site(session)
    for i, cheque in enumerate(await issue_cheques(session, scheme, 7)):
        await redeem(session, scheme, site, cheque, at=paris(2024, 1, 2 + i))
    batch, _ = await close_batch(session, cutoff=unique_cutoff(), now=utcnow())
    found = {i.financer_id: i for i in await list_invoices(session, batch_id=batch.id)}
    return scheme, batch, found[scheme.financer_id(0)], found[scheme.financer_id(1)]


async def _mine(session, numbers: set[str]):  # type: ignore[no-untyped-def]
    """The audit's invoice differences about these invoices only (the shared test database
    holds other tests' rows)."""
    return [d for d in await audit_invoices(session)
            if d.details.get("invoice") in numbers]


async def test_an_exact_transfer_with_its_reference_pays_the_invoice_once(
        session, invoices_of_a_batch) -> None:
    scheme, batch, state, dept = invoices_of_a_batch
    data = camt054([
        {"amount": _euros(dept.total_cents), "ref": dept.payment_reference},
        {"amount": _euros(state.total_cents - 1), "ref": state.payment_reference},
        {"amount": "12.34", "text": "VIR DIVERS SANS REF"},
    ], message_id="EXACT-1")

    result = await bank.import_statement(session, data, filename="camt.xml", imported_by=None,
                                         now=utcnow())

    assert (result.imported, result.matched, result.partial, result.unmatched) == (3, 1, 1, 1)
    rows = dict((await session.execute(text(
        "SELECT id, status FROM invoice WHERE id = ANY(:ids)"),
        {"ids": [state.id, dept.id]})).all())
    assert rows == {dept.id: "paid", state.id: "issued"}  # a partial payment is never applied
    postings = dict((await session.execute(text("""
        SELECT a.code, p.amount_cents FROM ledger_entry e
        JOIN ledger_posting p ON p.entry_id = e.id JOIN ledger_account a ON a.id = p.account_id
        WHERE e.idempotency_key = :k"""), {"k": f"invoice:{dept.id}:paid"})).all())
    assert postings[f"financer:{dept.financer_id}:receivable"] == dept.basis_cents
    assert postings["bank"] == -dept.total_cents
    statement = (await session.execute(text("SELECT status, paid_cents FROM statement "
                                            "WHERE id = :s"), {"s": dept.statement_id})).one()
    assert statement == ("paid", dept.basis_cents)  # its only invoice is paid
    assert await _mine(session, {dept.number, state.number}) == []

    # The same file again: nothing changes.
    again = await bank.import_statement(session, data, filename="camt.xml", imported_by=None,
                                        now=utcnow())
    assert again.already_imported and again.imported == 0
    count = (await session.execute(text(
        "SELECT count(*) FROM bank_line WHERE line_key LIKE 'ref:EXACT-1%'"))).scalar()
    assert count == 3


async def test_the_same_credit_in_a_camt053_after_its_camt054_is_not_counted_twice(
        session, invoices_of_a_batch) -> None:
    _scheme, _batch, _state, dept = invoices_of_a_batch
    credit = {"amount": _euros(dept.total_cents), "ref": dept.payment_reference,
              "bank_ref": "BANK-REF-77"}
    first = await bank.import_statement(session, camt054([credit], message_id="N-77"),
                                        filename=None, imported_by=None, now=utcnow())
    statement = camt054([credit], message_id="S-77").replace(
        b"camt.054.001.08", b"camt.053.001.02").replace(
        b"BkToCstmrDbtCdtNtfctn", b"BkToCstmrStmt").replace(b"Ntfctn>", b"Stmt>")
    second = await bank.import_statement(session, statement, filename=None, imported_by=None,
                                         now=utcnow())
    assert first.matched == 1
    assert not second.already_imported and second.imported == 0


async def test_a_credit_without_reference_is_suggested_by_amount_and_iban_then_confirmed(
        session, invoices_of_a_batch) -> None:
    _scheme, _batch, state, _dept = invoices_of_a_batch
    data = camt054([{"amount": _euros(state.total_cents), "iban": PAYER_IBAN,
                     "text": "MANDAT 2024-118 PASS NUMERIQUE"}], message_id="SUGG-1")
    result = await bank.import_statement(session, data, filename=None, imported_by=None,
                                         now=utcnow())
    assert result.suggested == 1 and result.matched == 0
    line_id, invoice_id = (await session.execute(text(
        "SELECT id, invoice_id FROM bank_line WHERE line_key = 'ref:SUGG-1-TX-0'"))).one()
    assert invoice_id == state.id
    status = (await session.execute(text("SELECT status FROM invoice WHERE id = :i"),
                                    {"i": state.id})).scalar()
    assert status == "issued"  # a suggestion is not a payment

    assert await bank.confirm_suggestion(session, bank_line_id=line_id, now=utcnow()) == state.id
    status = (await session.execute(text("SELECT status FROM invoice WHERE id = :i"),
                                    {"i": state.id})).scalar()
    assert status == "paid"
    with pytest.raises(bank.SuggestionNotPending):
        await bank.confirm_suggestion(session, bank_line_id=line_id, now=utcnow())


async def test_an_over_payment_and_a_second_payment_are_shown_not_applied(
        session, invoices_of_a_batch) -> None:
    _scheme, _batch, state, dept = invoices_of_a_batch
    result = await bank.import_statement(session, camt054([
        {"amount": _euros(state.total_cents + 500), "ref": state.payment_reference},
        {"amount": _euros(dept.total_cents), "ref": dept.payment_reference},
        {"amount": _euros(dept.total_cents), "ref": dept.payment_reference,
         "bank_ref": "SECOND"},
        {"amount": "5.00", "side": "DBIT"},
    ], message_id="OVER-1"), filename=None, imported_by=None, now=utcnow())
    assert (result.over, result.matched, result.duplicate, result.imported) == (1, 1, 1, 3)
    pending = await bank.list_lines(session, pending_only=True)
    assert {"over", "duplicate"} <= {line.status for line in pending}


async def test_a_paid_invoice_without_its_bank_line_is_an_audit_difference(
        session, invoices_of_a_batch) -> None:
    _scheme, _batch, _state, dept = invoices_of_a_batch
    await session.execute(text(
        "UPDATE invoice SET status = 'paid', paid_on = :d, paid_cents = total_cents "
        "WHERE id = :i"), {"d": date(2024, 3, 1), "i": dept.id})
    kinds = {d.kind for d in await _mine(session, {dept.number})}
    assert "paid_invoice_without_bank_line" in kinds
    assert "invoice_entry_missing" in kinds


@pytest.mark.parametrize("data", [b"<not xml", b"<Document><Other/></Document>",
                                  camt054([{"amount": "1.234", "ref": "RF18539007547034"}])])
async def test_a_broken_file_is_refused_and_changes_nothing(session, data: bytes) -> None:
    before = (await session.execute(text("SELECT count(*) FROM bank_statement"))).scalar()
    with pytest.raises(bank.InvalidBankStatement):
        await bank.import_statement(session, data, filename=None, imported_by=None,
                                    now=utcnow())
    after = (await session.execute(text("SELECT count(*) FROM bank_statement"))).scalar()
    assert before == after
