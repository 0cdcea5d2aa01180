"""Bank reconciliation (issue 14): the operator imports its bank's statement — camt.053
(end of day) or camt.054 (credit notification), ISO 20022 XML — and each credit is matched to
an invoice.

- By its structured creditor reference (ISO 11649 `RF…`, in `RmtInf/Strd/CdtrRefInf/Ref`, or
  found in the unstructured remittance text): exactly the invoice's total → the invoice is paid
  (`clearing.invoices.pay_invoice`, which writes the journal); less or more → `partial` or
  `over`, shown to the operator and never applied; an invoice already paid → `duplicate`.
- Without a reference: one unpaid invoice of that exact total whose financer's IBAN is the
  payer's → `suggested`, paid only when the operator confirms (`confirm_suggestion`).
- Anything else → `unmatched`, listed.

The same file imported twice changes nothing (its sha256 is unique), and a credit already met
in another file (same bank reference) is skipped. Parsed with lxml by local names, so the
versions banks send (camt.053.001.02 to .08, camt.054.001.02 to .08) read the same; no XSD of
those messages ships with a package here, so the parser checks what it needs instead (root
message, amounts, dates, currency) and refuses the file with a French message otherwise.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from lxml import etree
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from clearing.invoices import pay_invoice, rf_is_valid
from kit.errors import Conflict, InvalidInput, NotFound

MAX_FILE_BYTES = 20 * 1024 * 1024
_RF = re.compile(r"RF\d{2}[A-Z0-9]{1,21}")


class InvalidBankStatement(InvalidInput):
    code = "invalid_bank_statement"
    message = "Ce fichier n'est pas un relevé bancaire camt.053 ou camt.054 lisible."


class SuggestionNotPending(Conflict):
    code = "conflict"
    message = "Cette ligne bancaire n'attend plus de confirmation."


@dataclass(frozen=True, slots=True)
class CreditLine:
    """A credit as read from the file."""

    line_key: str
    booked_on: date
    amount_cents: int
    payer_name: str | None
    payer_iban: str | None
    reference: str | None
    remittance: str | None


@dataclass(slots=True)
class ParsedStatement:
    kind: str
    message_id: str | None
    credits: list[CreditLine] = field(default_factory=list)


def _children(node: Any, name: str) -> list[Any]:
    return [c for c in node if isinstance(c.tag, str) and etree.QName(c).localname == name]


def _first(node: Any, *path: str) -> Any | None:
    current = [node]
    for name in path:
        current = [c for n in current for c in _children(n, name)]
        if not current:
            return None
    return current[0]


def _text(node: Any, *path: str) -> str | None:
    found = _first(node, *path) if node is not None else None
    return found.text.strip() if found is not None and found.text else None


def _cents(node: Any) -> int:
    if node is None or not node.text:
        raise InvalidBankStatement("Une écriture du relevé n'a pas de montant.")
    if node.get("Ccy", "EUR") != "EUR":
        raise InvalidBankStatement("Seuls les relevés en euros sont acceptés.",
                                   currency=node.get("Ccy"))
    try:
        value = Decimal(node.text.strip())
    except InvalidOperation as exc:
        raise InvalidBankStatement("Un montant du relevé est illisible.") from exc
    if value <= 0 or value != value.quantize(Decimal("0.01")) or value > Decimal("1e9"):
        raise InvalidBankStatement("Un montant du relevé est hors bornes.", amount=str(value))
    return int(value * 100)


def _day(entry: Any) -> date:
    raw = (_text(entry, "BookgDt", "Dt") or _text(entry, "BookgDt", "DtTm")
           or _text(entry, "ValDt", "Dt"))
    try:
        return date.fromisoformat(raw[:10]) if raw else None  # type: ignore[return-value]
    except ValueError:
        pass
    raise InvalidBankStatement("Une écriture du relevé n'a pas de date lisible.")


def _reference(tx: Any) -> tuple[str | None, str | None]:
    """(RF reference, remittance text) of a transaction."""
    remittance = _first(tx, "RmtInf") if tx is not None else None
    if remittance is None:
        return None, None
    unstructured = " ".join(n.text.strip() for n in _children(remittance, "Ustrd") if n.text)
    for strd in _children(remittance, "Strd"):
        ref = _text(strd, "CdtrRefInf", "Ref")
        if ref and rf_is_valid(ref):
            return "".join(ref.split()).upper(), unstructured or None
    for candidate in _RF.findall("".join(unstructured.upper().split())):
        if rf_is_valid(candidate):
            return candidate, unstructured or None
    return None, unstructured or None


def _party(tx: Any) -> tuple[str | None, str | None]:
    parties = _first(tx, "RltdPties") if tx is not None else None
    if parties is None:
        return None, None
    name = _text(parties, "Dbtr", "Nm") or _text(parties, "Dbtr", "Pty", "Nm")
    iban = _text(parties, "DbtrAcct", "Id", "IBAN")
    return (name[:140] if name else None), (iban.replace(" ", "").upper() if iban else None)


def parse_camt(data: bytes) -> ParsedStatement:
    """The booked credits of a camt.053 or camt.054 file, one per transaction."""
    if len(data) > MAX_FILE_BYTES:
        raise InvalidBankStatement("Le fichier dépasse 20 Mo.")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise InvalidBankStatement() from exc
    message = next((c for c in root if isinstance(c.tag, str)), None)
    name = etree.QName(message).localname if message is not None else ""
    if name == "BkToCstmrStmt":
        kind, reports = "camt.053", _children(message, "Stmt")
    elif name == "BkToCstmrDbtCdtNtfctn":
        kind, reports = "camt.054", _children(message, "Ntfctn")
    else:
        raise InvalidBankStatement()
    message_id = _text(message, "GrpHdr", "MsgId")
    parsed = ParsedStatement(kind=kind, message_id=message_id[:64] if message_id else None)
    for r, report in enumerate(reports):
        report_id = _text(report, "Id") or str(r)
        for e, entry in enumerate(_children(report, "Ntry")):
            if _text(entry, "CdtDbtInd") != "CRDT":
                continue
            status = _text(entry, "Sts") or _text(entry, "Sts", "Cd")
            if status and status != "BOOK":
                continue  # pending or informational: the booked one comes later
            booked = _day(entry)
            entry_ref = _text(entry, "AcctSvcrRef")
            txs = [t for d in _children(entry, "NtryDtls") for t in _children(d, "TxDtls")]
            for t, tx in enumerate(txs or [None]):
                # (lxml elements without children are falsy: compare with None, never `or`)
                amount_node = None
                if tx is not None:
                    amount_node = _first(tx, "Amt")
                    if amount_node is None:
                        amount_node = _first(tx, "AmtDtls", "TxAmt", "Amt")
                if amount_node is None:
                    amount_node = _first(entry, "Amt")
                cents = _cents(amount_node)
                tx_ref = _text(tx, "Refs", "AcctSvcrRef") if tx is not None else None
                key = (f"ref:{tx_ref}" if tx_ref else
                       f"ref:{entry_ref}:{t}" if entry_ref else
                       f"msg:{message_id}:{report_id}:{e}:{t}")
                reference, remittance = _reference(tx)
                payer_name, payer_iban = _party(tx)
                parsed.credits.append(CreditLine(
                    line_key=key[:200], booked_on=booked, amount_cents=cents,
                    payer_name=payer_name, payer_iban=payer_iban, reference=reference,
                    remittance=remittance[:500] if remittance else None))
    return parsed


# ------------------------------------------------------------------------------ import


class ImportResult(BaseModel):
    """POST /api/v1/bank-statements: lines imported, matched (paid), unmatched (nothing
    fits), and what waits for the operator (suggested, partial, over, duplicate)."""

    bank_statement_id: int | None
    already_imported: bool
    imported: int
    matched: int
    unmatched: int
    suggested: int = 0
    partial: int = 0
    over: int = 0
    duplicate: int = 0


_INVOICE_BY_REFERENCE = text("""
SELECT id, status, total_cents FROM invoice
WHERE payment_reference = :ref AND type_code = '380'
""")

_SUGGEST = text("""
SELECT i.id FROM invoice i JOIN organisation o ON o.id = i.financer_id
WHERE i.type_code = '380' AND i.status <> 'paid' AND i.total_cents = :amount
  AND replace(upper(o.iban), ' ', '') = :iban
  AND NOT EXISTS (SELECT 1 FROM bank_line b WHERE b.invoice_id = i.id AND b.status = 'matched')
LIMIT 2
""")


async def import_statement(session: AsyncSession, data: bytes, *, filename: str | None,
                           imported_by: int | None, now: datetime) -> ImportResult:
    """Import a camt file and reconcile its credits (see the module docstring)."""
    parsed = parse_camt(data)
    digest = hashlib.sha256(data).hexdigest()
    statement_id = (await session.execute(text("""
        INSERT INTO bank_statement (sha256, kind, message_id, filename, line_count, imported_by,
                                    imported_at)
        VALUES (:sha, :kind, :msg, :name, :n, :by, :now)
        ON CONFLICT (sha256) DO NOTHING RETURNING id"""),
        {"sha": digest, "kind": parsed.kind, "msg": parsed.message_id,
         "name": (filename or "")[:200] or None, "n": len(parsed.credits), "by": imported_by,
         "now": now})).scalar()
    if statement_id is None:
        return ImportResult(bank_statement_id=None, already_imported=True, imported=0,
                            matched=0, unmatched=0)
    counts: dict[str, int] = {}
    imported = 0
    for credit in parsed.credits:
        status, invoice_id = await _match(session, credit)
        line_id = (await session.execute(text("""
            INSERT INTO bank_line (bank_statement_id, line_key, booked_on, amount_cents,
                                   payer_name, payer_iban, reference, remittance, status,
                                   invoice_id)
            VALUES (:s, :key, :day, :amount, :name, :iban, :ref, :rmt, :status, :invoice)
            ON CONFLICT (line_key) DO NOTHING RETURNING id"""),
            {"s": statement_id, "key": credit.line_key, "day": credit.booked_on,
             "amount": credit.amount_cents, "name": credit.payer_name,
             "iban": credit.payer_iban, "ref": credit.reference, "rmt": credit.remittance,
             "status": status, "invoice": invoice_id})).scalar()
        if line_id is None:
            continue  # this credit came in an earlier file
        imported += 1
        if status == "matched":
            await pay_invoice(session, invoice_id=invoice_id, amount_cents=credit.amount_cents,  # type: ignore[arg-type]
                              paid_on=credit.booked_on, reference=credit.reference or "",
                              now=now)
        counts[status] = counts.get(status, 0) + 1
    return ImportResult(bank_statement_id=statement_id, already_imported=False,
                        imported=imported, matched=counts.get("matched", 0),
                        unmatched=counts.get("unmatched", 0),
                        suggested=counts.get("suggested", 0), partial=counts.get("partial", 0),
                        over=counts.get("over", 0), duplicate=counts.get("duplicate", 0))


async def _match(session: AsyncSession, credit: CreditLine) -> tuple[str, int | None]:
    if credit.reference:
        row = (await session.execute(_INVOICE_BY_REFERENCE, {"ref": credit.reference})).first()
        if row is not None:
            invoice_id, status, total = row
            taken = (await session.execute(text(
                "SELECT 1 FROM bank_line WHERE invoice_id = :i AND status = 'matched'"),
                {"i": invoice_id})).first()
            if status == "paid" or taken:
                return "duplicate", invoice_id
            if credit.amount_cents == total:
                return "matched", invoice_id
            return ("partial" if credit.amount_cents < total else "over"), invoice_id
    if credit.payer_iban:
        rows = (await session.execute(_SUGGEST, {"amount": credit.amount_cents,
                                                 "iban": credit.payer_iban})).all()
        if len(rows) == 1:
            return "suggested", rows[0][0]
    return "unmatched", None


async def confirm_suggestion(session: AsyncSession, *, bank_line_id: int,
                             now: datetime) -> int:
    """The operator confirms a suggested match: the invoice is paid by this line."""
    row = (await session.execute(text("""
        SELECT status, invoice_id, amount_cents, booked_on, coalesce(reference, line_key)
        FROM bank_line WHERE id = :id FOR UPDATE"""), {"id": bank_line_id})).first()
    if row is None:
        raise NotFound("Ligne bancaire introuvable.", bank_line_id=bank_line_id)
    status, invoice_id, amount, booked_on, reference = row
    if status != "suggested" or invoice_id is None:
        raise SuggestionNotPending(bank_line_id=bank_line_id)
    await pay_invoice(session, invoice_id=invoice_id, amount_cents=amount, paid_on=booked_on,
                      reference=reference, now=now)
    await session.execute(text("UPDATE bank_line SET status = 'matched' WHERE id = :id"),
                          {"id": bank_line_id})
    return int(invoice_id)


class BankLineRead(BaseModel):
    id: int
    booked_on: date
    amount_cents: int
    payer_name: str | None
    payer_iban: str | None
    reference: str | None
    remittance: str | None
    status: str
    invoice_id: int | None
    invoice_number: str | None
    invoice_total_cents: int | None


async def list_lines(session: AsyncSession, *, pending_only: bool = False,
                     limit: int = 200) -> list[BankLineRead]:
    """Bank lines, newest first; `pending_only`: those the operator must look at."""
    where = "WHERE b.status <> 'matched'" if pending_only else ""
    rows = (await session.execute(text(f"""
        SELECT b.id, b.booked_on, b.amount_cents, b.payer_name, b.payer_iban, b.reference,
               b.remittance, b.status, b.invoice_id, i.number AS invoice_number,
               i.total_cents AS invoice_total_cents
        FROM bank_line b LEFT JOIN invoice i ON i.id = b.invoice_id
        {where} ORDER BY b.booked_on DESC, b.id DESC LIMIT :limit"""), {"limit": limit})).all()
    return [BankLineRead.model_validate(dict(r._mapping)) for r in rows]


BANK_LINE_LABELS = {
    "matched": "rapprochée (facture payée)",
    "partial": "paiement partiel — à traiter",
    "over": "trop-perçu — à traiter",
    "suggested": "rapprochement proposé — à confirmer",
    "unmatched": "non rapprochée",
    "duplicate": "facture déjà payée — à rembourser ?",
}
