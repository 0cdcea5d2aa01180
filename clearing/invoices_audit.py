"""The audit's checks of invoicing and bank reconciliation (issue 14), on their own so that
`clearing.audit` calls them in one line:

- per batch and per financer statement: Σ invoices (amount before VAT) = the statement's net
  amount, so Σ invoices of a batch = Σ financer statements;
- per invoice: its totals = its lines (VAT recomputed per category), its VAT entry
  (`invoice:<id>:vat`) when it carries VAT, numbers without gaps in each year;
- per paid invoice: its bank line (matched, same amount) and its `invoice:<id>:paid` entry —
  or its statement paid as a whole (Stripe, a transfer recorded by hand) with `paid:<statement>`;
- no `invoice:<id>:paid` entry and no matched bank line without a paid invoice.
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from clearing import journal
from clearing.invoices import vat_breakdown
from ledger.audit import Difference

# A financer statement paid through its invoices (pay_invoice → _settle_statement): it has no
# `paid:<statement>` entry, each invoice has its own. (SQL predicate on `statement s`.)
SETTLED_BY_INVOICES = ("(s.kind = 'financer' AND s.status = 'paid' "
                       "AND s.payment_reference LIKE 'factures %')")

# What invoice payments already settled of the financers' receivables while their statement
# waits for its other invoices: (account, cents) rows added to the expected balances.
RECEIVABLE_FROM_INVOICES = """
SELECT format('financer:%s:receivable', i.financer_id), CAST(sum(i.basis_cents) AS bigint)
FROM invoice i JOIN statement s ON s.id = i.statement_id
WHERE i.type_code = '380' AND i.status = 'paid' AND s.status <> 'paid'
GROUP BY i.financer_id
"""


async def _invoice_entries(session: AsyncSession) -> dict[str, list[tuple[str, int]]]:
    rows = (await session.execute(text(r"""
        SELECT e.idempotency_key, a.code, p.amount_cents
        FROM ledger_entry e JOIN ledger_posting p ON p.entry_id = e.id
        JOIN ledger_account a ON a.id = p.account_id
        WHERE e.idempotency_key LIKE 'invoice:%'"""))).all()
    out: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for key, code, amount in rows:
        out[key].append((code, amount))
    return out


def _entry(found: list[Difference], entries: dict[str, list[tuple[str, int]]], key: str,
           expected: list[tuple[str, int]], number: str) -> None:
    entry = entries.pop(key, None)
    if entry is None:
        found.append(Difference("invoice_entry_missing",
                                f"L'écriture {key} de la facture {number} est absente du journal.",
                                details={"key": key, "invoice": number}))
    elif sorted(entry) != sorted(expected):
        found.append(Difference("invoice_entry_mismatch",
                                f"L'écriture {key} ne correspond pas à la facture {number}.",
                                details={"key": key, "journal": sorted(entry),
                                         "recomputed": sorted(expected)}))


async def audit_invoices(session: AsyncSession) -> list[Difference]:
    """Invoicing's checks (see the module docstring); an empty list means all agrees."""
    found: list[Difference] = []
    for batch_id, statements, invoiced in (await session.execute(text("""
        SELECT s.batch_id, CAST(sum(s.net_cents) AS bigint),
               CAST(coalesce(sum(i.basis), 0) AS bigint)
        FROM statement s LEFT JOIN (
            SELECT statement_id, sum(basis_cents) AS basis FROM invoice
            WHERE type_code = '380' GROUP BY statement_id) i ON i.statement_id = s.id
        WHERE s.kind = 'financer' GROUP BY s.batch_id ORDER BY s.batch_id"""))).all():
        if statements != invoiced:
            found.append(Difference(
                "invoices_statements_mismatch",
                f"Lot {batch_id} : les factures totalisent {invoiced} centimes hors TVA, les "
                f"relevés des financeurs {statements}.",
                details={"batch_id": batch_id, "invoices_cents": invoiced,
                         "statements_cents": statements}))
    entries = await _invoice_entries(session)
    rows = (await session.execute(text(f"""
        SELECT i.id, i.number, i.type_code, i.financer_id, i.status, i.basis_cents,
               i.vat_cents, i.total_cents, i.paid_cents, i.lines, i.year, i.sequence,
               coalesce({SETTLED_BY_INVOICES}, FALSE) AS by_invoices,
               s.status AS statement_status,
               (SELECT count(*) FROM bank_line b WHERE b.invoice_id = i.id
                 AND b.status = 'matched' AND b.amount_cents = i.total_cents) AS bank_lines
        FROM invoice i LEFT JOIN statement s ON s.id = i.statement_id
        ORDER BY i.id"""))).all()
    sequences: dict[int, list[int]] = defaultdict(list)
    for r in rows:
        sequences[r.year].append(r.sequence)
        breakdown = vat_breakdown(r.lines)
        basis = sum(g["basis_cents"] for g in breakdown)
        vat = sum(g["vat_cents"] for g in breakdown)
        if (basis, vat, basis + vat) != (r.basis_cents, r.vat_cents, r.total_cents):
            found.append(Difference(
                "invoice_totals_mismatch",
                f"La facture {r.number} ne totalise pas ses lignes : {r.total_cents} centimes "
                f"enregistrés, {basis + vat} recalculés.",
                details={"invoice": r.number, "stored": [r.basis_cents, r.vat_cents],
                         "recomputed": [basis, vat]}))
        if r.type_code == "380" and r.vat_cents:
            _entry(found, entries, journal.invoice_vat_key(r.id),
                   journal.invoice_vat(r.financer_id, r.vat_cents), r.number)
        if r.status != "paid":
            continue
        paid_as_statement = r.statement_status == "paid" and not r.by_invoices
        key = journal.invoice_paid_key(r.id)
        if paid_as_statement and key not in entries:
            continue  # the statement's own `paid:` entry holds the cash (checked by clearing)
        if not r.bank_lines:
            found.append(Difference(
                "paid_invoice_without_bank_line",
                f"La facture {r.number} est payée sans ligne de relevé bancaire qui la règle.",
                details={"invoice": r.number}))
        _entry(found, entries, key, journal.invoice_paid(
            r.financer_id, basis_cents=r.basis_cents, vat_cents=r.vat_cents), r.number)
    for year, seen in sorted(sequences.items()):
        if sorted(seen) != list(range(1, len(seen) + 1)):
            missing = sorted(set(range(1, max(seen) + 1)) - set(seen))
            found.append(Difference(
                "invoice_numbering_gap",
                f"Numérotation des factures {year} discontinue : {len(missing)} numéro(s) "
                "manquant(s).", details={"year": year, "missing": missing[:20]}))
    for key in sorted(entries):
        found.append(Difference("entry_without_invoice",
                                f"L'écriture {key} ne correspond à aucune facture.",
                                details={"key": key}))
    for line_id, number in (await session.execute(text("""
        SELECT b.id, i.number FROM bank_line b JOIN invoice i ON i.id = b.invoice_id
        WHERE b.status = 'matched' AND i.status <> 'paid'"""))).all():
        found.append(Difference(
            "bank_line_invoice_unpaid",
            f"La ligne bancaire {line_id} règle la facture {number}, qui n'est pas payée.",
            details={"bank_line_id": line_id, "invoice": number}))
    return found
