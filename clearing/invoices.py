"""Invoices to financers (issue 14): a facture (type 380) per financer × programme when a batch
closes, an avoir (type 381) per financer × programme when the programme ends, numbered without
gaps per year, each with its ISO 11649 creditor reference, and their payment.

Rules, and where they live:

- number: `next_number` — `PN-<year>-<000123>`, the year's row of `invoice_counter` incremented
  by one UPDATE in the transaction that writes the invoice (the row stays locked until it
  commits: a rolled-back close gives its numbers back, two closes cannot interleave).
- creditor reference: `rf_reference` (ISO 11649: `RF` + 2 check digits + the reference, mod 97).
- lines: `_cheque_lines` — one line per démarche family and face value: quantity × face value,
  less an allowance for what the other co-financers pay, so the line's net amount is exactly
  what the statement charged this financer; `_fee_lines` — the statement's fee (rounded once per
  statement, DESIGN.md §6) split over its programmes by the largest remainder (`kit.money`), so
  Σ invoices of a batch = Σ financer statements, to the cent.
- VAT: per line category and rate from `InvoiceTerms` (face value out of scope, `O`: a
  multi-purpose voucher; the fee `S` at 20 %), computed once per category on the sum of its
  lines (`half_up_bp`), added on top of the statement and posted as `invoice:<id>:vat`.
- payment: `pay_invoice` — an exact transfer marks the invoice paid and posts
  `invoice:<id>:paid`; when every invoice of a statement is paid, so is the statement.
- payment method: `payment_method` — what the participation says, else a transfer after the
  invoice for public bodies and the Stripe mandate for the others when they have one.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from clearing import journal
from clearing.errors import StatementNotFound
from kit.errors import Conflict, InvalidInput, NotFound
from kit.money import half_up_bp, largest_remainder
from ledger import service as ledger

# Financer categories that are public bodies (paying through Chorus Pro, by transfer).
PUBLIC_CATEGORIES = frozenset({"state", "region", "departement", "epci", "commune"})

STATUS_LABELS = {
    "issued": "émise",
    "deposited": "déposée sur Chorus Pro",
    "in_payment": "mise en paiement",
    "paid": "payée",
}
TYPE_LABELS = {"380": "Facture", "381": "Avoir"}
METHOD_LABELS = {"transfer": "virement après facture", "stripe_sepa": "prélèvement SEPA (mandat)"}
VAT_CATEGORIES = {"S", "O", "E", "Z"}


class InvoiceNotFound(NotFound):
    code = "not_found"
    message = "Facture introuvable."


class InvoiceAlreadyPaid(Conflict):
    code = "invoice_already_paid"
    message = "Cette facture est déjà payée."


class InvoiceNotPayable(Conflict):
    code = "invoice_not_payable"
    message = "Un avoir ne se paie pas."


class PaymentAmountMismatch(Conflict):
    code = "payment_amount_mismatch"
    message = ("Le montant reçu ne correspond pas au montant de la facture : rien n'a été "
               "enregistré, vérifiez le virement.")


# ------------------------------------------------------------------------------ terms


@dataclass(frozen=True, slots=True)
class Seller:
    """The operator as it appears on its invoices (from settings)."""

    name: str = "Opérateur Pass numérique"
    siret: str | None = None
    vat_number: str | None = None
    vat_exemption: str | None = None
    address: str | None = None
    postcode: str | None = None
    city: str | None = None
    iban: str = "FR7630006000011234567890189"
    bic: str | None = "AGRIFRPP"


@dataclass(frozen=True, slots=True)
class VatRule:
    """A line's VAT: UNCL 5305 category and rate (basis points), and the reason a category
    other than S carries on the invoice (BT-120)."""

    category: str
    rate_bp: int
    exemption_reason: str | None = None

    def __post_init__(self) -> None:
        if self.category not in VAT_CATEGORIES or not 0 <= self.rate_bp <= 10_000:
            raise InvalidInput("Règle de TVA invalide.", category=self.category)
        if self.category != "S" and self.rate_bp:
            raise InvalidInput("Seule la catégorie S porte un taux de TVA.")


FACE_VALUE_VAT = VatRule("O", 0, "Bon à usages multiples : hors du champ de la TVA "
                                 "(art. 256 ter du CGI)")
FEE_VAT = VatRule("S", 2000)


@dataclass(frozen=True, slots=True)
class InvoiceTerms:
    """What invoicing takes from the settings (the API and the CLI build it)."""

    seller: Seller = field(default_factory=Seller)
    face_value_vat: VatRule = FACE_VALUE_VAT
    fee_vat: VatRule = FEE_VAT
    due_days: int = 30


# ------------------------------------------------------------------------------ pure rules


def invoice_number(year: int, sequence: int) -> str:
    return f"PN-{year}-{sequence:06d}"


def _rf_digits(text_: str) -> int:
    return int("".join(str(int(c, 36)) for c in text_))


def rf_reference(base: str) -> str:
    """The ISO 11649 structured creditor reference of `base` (letters and digits, ≤ 21):
    RF + two check digits + base, the check making the whole ≡ 1 (mod 97)."""
    base = "".join(c for c in base.upper() if c.isalnum())
    if not base or len(base) > 21:
        raise InvalidInput("Référence de paiement impossible.", base=base)
    check = 98 - _rf_digits(base + "RF00") % 97
    return f"RF{check:02d}{base}"


def rf_is_valid(reference: str) -> bool:
    """True when `reference` (spaces allowed) is a well-formed ISO 11649 reference."""
    ref = "".join(reference.split()).upper()
    if len(ref) < 5 or len(ref) > 25 or not ref.startswith("RF") or not ref.isalnum():
        return False
    if not ref[2:4].isdigit():
        return False
    return _rf_digits(ref[4:] + ref[:4]) % 97 == 1


def payment_method(*, category: str | None, chosen: str | None, has_mandate: bool) -> str:
    """How a financer pays: the participation's choice, else a transfer after the invoice for
    a public body, the Stripe mandate for another body that has one, else a transfer."""
    if chosen:
        return chosen
    if category in PUBLIC_CATEGORIES:
        return "transfer"
    return "stripe_sepa" if has_mandate else "transfer"


def vat_breakdown(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per VAT category and rate: the basis (Σ line net amounts) and the tax, rounded once."""
    groups: dict[tuple[str, int], dict[str, Any]] = {}
    for line in lines:
        key = (line["vat_category"], line["vat_bp"])
        group = groups.setdefault(key, {"category": key[0], "rate_bp": key[1], "basis_cents": 0,
                                        "exemption_reason": line.get("exemption_reason")})
        group["basis_cents"] += line["net_cents"]
    for group in groups.values():
        group["vat_cents"] = half_up_bp(group["basis_cents"], group["rate_bp"])
    return sorted(groups.values(), key=lambda g: (g["category"], g["rate_bp"]))


def split_fee(fee_cents: int, weights: dict[int, int]) -> dict[int, int]:
    """A statement's fee over its programmes, in proportion to amount × rate, to the cent."""
    ids = sorted(weights)
    if not fee_cents or not ids or not sum(weights.values()):
        return {pid: 0 for pid in ids} if not fee_cents else {ids[0]: fee_cents} if ids else {}
    return dict(zip(ids, largest_remainder(fee_cents, [weights[i] for i in ids]), strict=True))


# ------------------------------------------------------------------------------ numbering


async def next_numbers(session: AsyncSession, year: int, count: int) -> list[int]:
    """The next `count` numbers of `year`, taken under the counter row's lock (held to
    commit): one statement, whatever the count."""
    last = (await session.execute(text("""
        INSERT INTO invoice_counter (year, last_number) VALUES (:y, :n)
        ON CONFLICT (year) DO UPDATE SET last_number = invoice_counter.last_number + :n
        RETURNING last_number"""), {"y": year, "n": count})).scalar_one()
    return list(range(last - count + 1, last + 1))


async def next_number(session: AsyncSession, year: int) -> tuple[int, str]:
    """The next number of `year` (see `next_numbers`)."""
    [sequence] = await next_numbers(session, year, 1)
    return sequence, invoice_number(year, sequence)


# ------------------------------------------------------------------------------ issuing

# What each financer was charged in the batch, by programme and démarche family: its
# statement's lines summed over communes (a few hundred rows, where reading the allocations
# would scan every redemption of the batch again). A cheque's value is its programme's face
# value, fixed when the programme is created and copied on each cheque at issuance.
_CHARGED = text("""
SELECT s.organisation_id AS financer_id, l.programme_id, l.demarche_family,
       p.face_value_cents AS value_cents, CAST(sum(l.cheque_count) AS bigint) AS cheques,
       CAST(sum(l.amount_cents) AS bigint) AS charged
FROM statement s JOIN statement_line l ON l.statement_id = s.id
JOIN programme p ON p.id = l.programme_id
WHERE s.batch_id = :b AND s.kind = 'financer'
GROUP BY 1, 2, 3, 4
ORDER BY 1, 2, 3 NULLS LAST
""")

_FINANCER_STATEMENTS = text("""
SELECT s.id, s.organisation_id, s.gross_cents, s.fee_cents, s.net_cents,
       o.name, o.siret, o.address, o.commune_insee, o.financer_category,
       (o.stripe_customer_id IS NOT NULL AND o.stripe_payment_method_id IS NOT NULL)
FROM statement s JOIN organisation o ON o.id = s.organisation_id
WHERE s.batch_id = :b AND s.kind = 'financer'
ORDER BY s.organisation_id
""")

_PARTICIPATIONS = text("""
SELECT pf.programme_id, pf.organisation_id, pf.engagement_number, pf.service_code,
       pf.payment_method, p.name, p.financer_fee_bp
FROM programme_financer pf JOIN programme p ON p.id = pf.programme_id
WHERE pf.programme_id = ANY(:pids)
""")

# Every invoice of a close in one statement (one array per column).
_INSERT = text("""
INSERT INTO invoice (number, year, sequence, type_code, financer_id, programme_id, batch_id,
                     statement_id, corrects, issue_date, period_start, period_end, due_date,
                     basis_cents, vat_cents, total_cents, payment_reference, payment_method,
                     status, engagement_number, service_code, buyer, seller, lines)
SELECT x.number, :year, x.sequence, :type_code, x.financer_id, x.programme_id, :batch_id,
       x.statement_id, CAST(x.corrects AS varchar[]), :issue_date, :period_start,
       :period_end, :due_date, x.basis, x.vat, x.basis + x.vat, x.reference, x.method,
       'issued', x.engagement, x.service, CAST(x.buyer AS jsonb), CAST(x.seller AS jsonb),
       CAST(x.lines AS jsonb)
FROM unnest(CAST(:numbers AS text[]), CAST(:sequences AS bigint[]),
            CAST(:financers AS bigint[]), CAST(:programmes AS bigint[]),
            CAST(:statements AS bigint[]), CAST(:corrects AS text[]),
            CAST(:basis AS bigint[]), CAST(:vat AS bigint[]), CAST(:references AS text[]),
            CAST(:methods AS text[]), CAST(:engagements AS text[]),
            CAST(:services AS text[]), CAST(:buyers AS text[]), CAST(:sellers AS text[]),
            CAST(:lines AS text[]))
     AS x(number, sequence, financer_id, programme_id, statement_id, corrects, basis, vat,
          reference, method, engagement, service, buyer, seller, lines)
ORDER BY x.sequence
RETURNING id, financer_id, vat_cents, number
""")


@dataclass(slots=True)
class _NewInvoice:
    financer_id: int
    programme_id: int
    statement_id: int | None
    corrects: list[str]
    lines: list[dict[str, Any]]
    buyer: dict[str, Any]
    seller: dict[str, Any]
    method: str


def _family_label(family: str | None) -> str:
    from pass_.enums import demarche_label  # pass_ is below clearing: allowed, kept local (cheap)

    return demarche_label(family)


def _cheque_lines(rows: list[Any], rule: VatRule) -> list[dict[str, Any]]:
    lines = []
    for row in rows:
        gross = row.cheques * row.value_cents
        if row.charged > gross:  # never: a financer's part of a cheque is at most its value
            raise Conflict("Montant facturé supérieur à la valeur des chèques.",
                           programme_id=row.programme_id)
        lines.append({
            "kind": "cheques", "family": row.demarche_family,
            "name": f"Chèques Pass numérique encaissés — {_family_label(row.demarche_family)}",
            "quantity": row.cheques, "unit_cents": row.value_cents, "gross_cents": gross,
            "allowance_cents": gross - row.charged,
            "allowance_reason": "Part prise en charge par les autres cofinanceurs",
            "net_cents": row.charged, "vat_category": rule.category, "vat_bp": rule.rate_bp,
            "exemption_reason": rule.exemption_reason,
        })
    return lines


def _fee_line(fee_cents: int, rate_bp: int, rule: VatRule) -> dict[str, Any]:
    return {
        "kind": "fee", "family": None,
        "name": f"Frais de gestion ({rate_bp / 100:g} % des chèques)".replace(".", ","),
        "quantity": 1, "unit_cents": fee_cents, "gross_cents": fee_cents,
        "allowance_cents": 0, "allowance_reason": None, "net_cents": fee_cents,
        "vat_category": rule.category, "vat_bp": rule.rate_bp,
        "exemption_reason": rule.exemption_reason,
    }


def _json(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False, sort_keys=True)


async def issue_for_batch(session: AsyncSession, *, batch_id: int, issue_date: date,
                          period_start: date | None, period_end: date,
                          terms: InvoiceTerms | None = None) -> list[int]:
    """One invoice per financer statement of the batch and programme it covers, numbered now.
    Issuing again for the same batch finds them (unique index) and writes nothing."""
    terms = terms or InvoiceTerms()
    existing = (await session.execute(
        text("SELECT id FROM invoice WHERE batch_id = :b ORDER BY id"), {"b": batch_id})).all()
    if existing:
        return [r[0] for r in existing]
    statements = (await session.execute(_FINANCER_STATEMENTS, {"b": batch_id})).all()
    if not statements:
        return []
    charged: dict[int, dict[int, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for row in (await session.execute(_CHARGED, {"b": batch_id})).all():
        charged[row.financer_id][row.programme_id].append(row)
    pids = sorted({pid for by_p in charged.values() for pid in by_p})
    participations = {(r.programme_id, r.organisation_id): r for r in (
        await session.execute(_PARTICIPATIONS, {"pids": pids})).all()}
    seller = asdict(terms.seller)
    pending: list[_NewInvoice] = []
    for s in statements:
        by_programme = charged.get(s.organisation_id, {})
        weights = {pid: sum(r.charged for r in rows) * participations[(pid, s.organisation_id)]
                   .financer_fee_bp for pid, rows in by_programme.items()}
        fees = split_fee(s.fee_cents, weights)
        for pid in sorted(by_programme):
            part = participations[(pid, s.organisation_id)]
            lines = _cheque_lines(by_programme[pid], terms.face_value_vat)
            if fees.get(pid):
                lines.append(_fee_line(fees[pid], part.financer_fee_bp, terms.fee_vat))
            for i, line in enumerate(lines, 1):
                line["id"] = str(i)
            buyer = {"name": s.name, "siret": s.siret, "address": s.address,
                     "commune_insee": s.commune_insee, "category": s.financer_category,
                     "engagement_number": part.engagement_number,
                     "service_code": part.service_code, "programme_name": part.name}
            method = payment_method(category=s.financer_category, chosen=part.payment_method,
                                    has_mandate=bool(s[10]))
            pending.append(_NewInvoice(s.organisation_id, pid, s.id, [], lines, buyer, seller,
                                       method))
    return await _insert(session, pending, type_code="380", batch_id=batch_id,
                         issue_date=issue_date, period_start=period_start,
                         period_end=period_end,
                         due_date=issue_date + timedelta(days=terms.due_days))


async def _insert(session: AsyncSession, pending: list[_NewInvoice], *, type_code: str,
                  batch_id: int | None, issue_date: date, period_start: date | None,
                  period_end: date | None, due_date: date | None) -> list[int]:
    """Number and write `pending` invoices (in this order) and post their VAT entries."""
    if not pending:
        return []
    year = issue_date.year
    sequences = await next_numbers(session, year, len(pending))
    numbers = [invoice_number(year, n) for n in sequences]
    totals = [vat_breakdown(p.lines) for p in pending]
    rows = (await session.execute(_INSERT, {
        "year": year, "type_code": type_code, "batch_id": batch_id, "issue_date": issue_date,
        "period_start": period_start, "period_end": period_end, "due_date": due_date,
        "numbers": numbers, "sequences": sequences,
        "financers": [p.financer_id for p in pending],
        "programmes": [p.programme_id for p in pending],
        "statements": [p.statement_id for p in pending],
        "corrects": ["{" + ",".join(f'"{c}"' for c in p.corrects) + "}" for p in pending],
        "basis": [sum(g["basis_cents"] for g in t) for t in totals],
        "vat": [sum(g["vat_cents"] for g in t) for t in totals],
        "references": [rf_reference(n.replace("-", "")) for n in numbers],
        "methods": [p.method for p in pending],
        "engagements": [p.buyer.get("engagement_number") for p in pending],
        "services": [p.buyer.get("service_code") for p in pending],
        "buyers": [_json(p.buyer) for p in pending],
        "sellers": [_json(p.seller) for p in pending],
        "lines": [_json(p.lines) for p in pending],
    })).all()
    if type_code == "380":
        vat_entries = [ledger.NewEntry(key=journal.invoice_vat_key(r.id),
                                       kind=journal.INVOICE_VAT_KIND,
                                       postings=journal.invoice_vat(r.financer_id, r.vat_cents),
                                       memo={"invoice": r.number})
                       for r in rows if r.vat_cents]
        if vat_entries:
            await ledger.post_many(session, vat_entries)
    return [int(r.id) for r in rows]


async def issue_credit_notes(session: AsyncSession, *, programme_id: int, issue_date: date,
                             terms: InvoiceTerms | None = None) -> list[int]:
    """One avoir (381) per credit-note statement of the ended programme, referring to the
    financer's invoices of that programme; again for the same programme writes nothing."""
    notes = (await session.execute(text("""
        SELECT s.id, s.organisation_id, s.net_cents, o.name, o.siret, o.address,
               o.commune_insee, o.financer_category, pf.engagement_number, pf.service_code,
               pf.payment_method, p.name
        FROM statement s JOIN organisation o ON o.id = s.organisation_id
        JOIN programme p ON p.id = s.programme_id
        LEFT JOIN programme_financer pf ON pf.programme_id = s.programme_id
             AND pf.organisation_id = s.organisation_id
        LEFT JOIN invoice i ON i.type_code = '381' AND i.programme_id = s.programme_id
             AND i.financer_id = s.organisation_id
        WHERE s.kind = 'credit_note' AND s.programme_id = :p AND i.id IS NULL
        ORDER BY s.organisation_id"""), {"p": programme_id})).all()
    pending: list[_NewInvoice] = []
    for n in notes:
        corrected = (await session.execute(text("""
            SELECT number, seller FROM invoice WHERE type_code = '380' AND programme_id = :p
            AND financer_id = :f ORDER BY id"""), {"p": programme_id, "f": n[1]})).all()
        seller = corrected[-1][1] if corrected else asdict((terms or InvoiceTerms()).seller)
        rule = (terms or InvoiceTerms()).face_value_vat
        lines = [{"id": "1", "kind": "credit", "family": None,
                  "name": f"Engagement non consommé — {n[11]}", "quantity": 1,
                  "unit_cents": n[2], "gross_cents": n[2], "allowance_cents": 0,
                  "allowance_reason": None, "net_cents": n[2], "vat_category": rule.category,
                  "vat_bp": rule.rate_bp, "exemption_reason": rule.exemption_reason}]
        buyer = {"name": n[3], "siret": n[4], "address": n[5], "commune_insee": n[6],
                 "category": n[7], "engagement_number": n[8], "service_code": n[9],
                 "programme_name": n[11]}
        pending.append(_NewInvoice(n[1], programme_id, n[0], [c[0] for c in corrected], lines,
                                   buyer, seller, payment_method(category=n[7], chosen=n[10],
                                                                 has_mandate=False)))
    return await _insert(session, pending, type_code="381", batch_id=None,
                         issue_date=issue_date, period_start=None, period_end=None,
                         due_date=None)


# ------------------------------------------------------------------------------ reading


class InvoiceRead(BaseModel):
    """The HTTP contract's invoice (GET /api/v1/invoices)."""

    id: int
    number: str
    type_code: str
    financer_id: int
    programme_id: int
    batch_id: int | None
    issue_date: date
    due_date: date | None
    total_cents: int
    payment_reference: str
    status: str
    engagement_number: str | None
    service_code: str | None


class InvoiceDetail(InvoiceRead):
    """Everything the PDF, the pages and the Chorus Pro deposit need."""

    statement_id: int | None
    corrects: list[str]
    period_start: date | None
    period_end: date | None
    basis_cents: int
    vat_cents: int
    payment_method: str
    buyer: dict[str, Any]
    seller: dict[str, Any]
    lines: list[dict[str, Any]]
    chorus_flow_id: str | None
    chorus_invoice_id: str | None
    chorus_status: str | None
    deposited_at: datetime | None
    paid_cents: int | None
    paid_on: date | None
    programme_name: str = ""
    financer_name: str = ""

    @property
    def status_label(self) -> str:
        return STATUS_LABELS[self.status]

    @property
    def type_label(self) -> str:
        return TYPE_LABELS[self.type_code]

    def days_late(self, today: date) -> int:
        if self.status == "paid" or self.due_date is None:
            return 0
        return max(0, (today - self.due_date).days)


_SELECT = """
SELECT i.*, p.name AS programme_name, o.name AS financer_name
FROM invoice i JOIN programme p ON p.id = i.programme_id JOIN organisation o ON o.id = i.financer_id
"""


async def list_invoices(session: AsyncSession, *, financer_id: int | None = None,
                        batch_id: int | None = None, overdue_on: date | None = None,
                        limit: int = 500) -> list[InvoiceDetail]:
    """Invoices, newest first: of one financer (None: all), of a batch, or unpaid 380s whose
    due date is before `overdue_on` (oldest due first)."""
    where, params = ["TRUE"], {"limit": limit}
    if financer_id is not None:
        where.append("i.financer_id = :f")
        params["f"] = financer_id
    if batch_id is not None:
        where.append("i.batch_id = :b")
        params["b"] = batch_id
    order = "i.id DESC"
    if overdue_on is not None:
        where.append("i.type_code = '380' AND i.status <> 'paid' AND i.due_date < :d")
        params["d"] = overdue_on  # type: ignore[assignment]
        order = "i.due_date, i.id"
    rows = (await session.execute(text(
        f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY {order} LIMIT :limit"), params)).all()
    return [InvoiceDetail.model_validate(dict(r._mapping)) for r in rows]


async def get_invoice(session: AsyncSession, invoice_id: int, *,
                      financer_id: int | None = None) -> InvoiceDetail:
    """One invoice; another financer's is not found."""
    row = (await session.execute(text(f"{_SELECT} WHERE i.id = :id"), {"id": invoice_id})).first()
    if row is None or (financer_id is not None and row.financer_id != financer_id):
        raise InvoiceNotFound(invoice_id=invoice_id)
    return InvoiceDetail.model_validate(dict(row._mapping))


async def statement_invoices(session: AsyncSession, statement_id: int) -> list[InvoiceDetail]:
    rows = (await session.execute(text(f"{_SELECT} WHERE i.statement_id = :s ORDER BY i.id"),
                                  {"s": statement_id})).all()
    return [InvoiceDetail.model_validate(dict(r._mapping)) for r in rows]


async def cheque_rows(session: AsyncSession, invoice: InvoiceDetail) -> list[Any]:
    """The cheques an invoice charges, one row each (the CSV attached to its PDF): serial,
    day, démarche, site commune, face value, the financer's part."""
    if invoice.batch_id is None:
        return []
    return list((await session.execute(text("""
        SELECT c.serial, r.redeemed_at, r.demarche_family, r.service, o.name AS site_name,
               o.commune_insee, r.value_cents, ap.amount_cents
        FROM allocation a
        JOIN allocation_pattern ap ON ap.batch_id = a.batch_id AND ap.pattern = a.pattern
        JOIN redemption r ON r.id = a.redemption_id
        JOIN cheque c ON c.id = r.cheque_id
        JOIN organisation o ON o.id = r.site_id
        WHERE a.batch_id = :b AND ap.financer_id = :f AND r.programme_id = :p
        ORDER BY r.redeemed_at, r.id"""),
        {"b": invoice.batch_id, "f": invoice.financer_id, "p": invoice.programme_id})).all())


# ------------------------------------------------------------------------------ paying


async def pay_invoice(session: AsyncSession, *, invoice_id: int, amount_cents: int,
                      paid_on: date, reference: str, now: datetime) -> bool:
    """Record the transfer paying an invoice, exactly its total: the invoice is paid, the
    journal gets `invoice:<id>:paid`, and the statement is paid once all its invoices are.
    False when it was already paid (nothing changes). Another amount is refused."""
    row = (await session.execute(text("""
        SELECT type_code, status, total_cents, basis_cents, vat_cents, financer_id,
               statement_id, number
        FROM invoice WHERE id = :id FOR UPDATE"""), {"id": invoice_id})).first()
    if row is None:
        raise InvoiceNotFound(invoice_id=invoice_id)
    type_code, status, total, basis, vat, financer_id, statement_id, number = row
    if type_code != "380":
        raise InvoiceNotPayable(invoice_id=invoice_id)
    if status == "paid":
        return False
    if amount_cents != total:
        raise PaymentAmountMismatch(invoice_id=invoice_id, total_cents=total,
                                    amount_cents=amount_cents)
    await session.execute(text("""
        UPDATE invoice SET status = 'paid', paid_cents = :a, paid_on = :d WHERE id = :id"""),
        {"a": amount_cents, "d": paid_on, "id": invoice_id})
    await ledger.post(session, key=journal.invoice_paid_key(invoice_id),
                      kind=journal.INVOICE_PAID_KIND,
                      postings=journal.invoice_paid(financer_id, basis_cents=basis,
                                                    vat_cents=vat),
                      memo={"invoice": number, "reference": reference}, at=now)
    if statement_id is not None:
        await _settle_statement(session, statement_id, paid_on, now)
    return True


async def _settle_statement(session: AsyncSession, statement_id: int, paid_on: date,
                            now: datetime) -> None:
    """A financer statement whose invoices are all paid is paid (the journal already has
    each invoice's payment: no `paid:<statement>` entry)."""
    unpaid, numbers = (await session.execute(text("""
        SELECT count(*) FILTER (WHERE status <> 'paid'), string_agg(number, ' ' ORDER BY id)
        FROM invoice WHERE statement_id = :s AND type_code = '380'"""),
        {"s": statement_id})).one()
    if unpaid:
        return
    await session.execute(text("""
        UPDATE statement SET status = 'paid', paid_cents = net_cents, paid_on = :d,
               paid_at = :now, payment_reference = left('factures ' || :numbers, 140),
               failure_message = NULL
        WHERE id = :s AND kind = 'financer' AND status <> 'paid'"""),
        {"d": paid_on, "now": now, "numbers": numbers, "s": statement_id})


async def mark_paid_with_statement(session: AsyncSession, *, statement_id: int,
                                   paid_on: date) -> None:
    """A statement paid as a whole (Stripe debit, transfer recorded by hand): its invoices are
    paid too, without entry of their own (the statement's `paid:` entry holds the cash)."""
    found = (await session.execute(text("SELECT 1 FROM statement WHERE id = :s"),
                                   {"s": statement_id})).first()
    if found is None:
        raise StatementNotFound(statement_id=statement_id)
    await session.execute(text("""
        UPDATE invoice SET status = 'paid', paid_cents = total_cents, paid_on = :d
        WHERE statement_id = :s AND type_code = '380' AND status <> 'paid'"""),
        {"d": paid_on, "s": statement_id})


async def issue_batch_invoices(session: AsyncSession, batch: Any, *, now: datetime,
                               terms: InvoiceTerms | None = None) -> list[int]:
    """The invoices of a batch just closed: issued today (Paris), for the period from the
    previous cutoff to the day before this one."""
    from time import perf_counter

    import structlog

    from kit.clock import paris_day

    start = perf_counter()
    ids = await issue_for_batch(
        session, batch_id=batch.id, issue_date=paris_day(now),
        period_start=paris_day(batch.period_start) if batch.period_start else None,
        period_end=paris_day(batch.cutoff) - timedelta(days=1), terms=terms)
    structlog.get_logger().info("invoices_issued", batch_id=batch.id, invoices=len(ids),
                                invoices_ms=round((perf_counter() - start) * 1000))
    return ids


async def statement_cheques(session: AsyncSession, *, batch_id: int,
                            financer_id: int) -> list[Any]:
    """Every cheque a financer statement charges, one row each, in clearing order, with its
    programme and the invoice that bills it (the financer's CSV)."""
    return list((await session.execute(text("""
        SELECT c.serial, r.redeemed_at, p.name AS programme_name, r.demarche_family,
               r.service, o.name AS site_name, o.commune_insee, r.value_cents,
               ap.amount_cents, i.number AS invoice_number
        FROM allocation a
        JOIN allocation_pattern ap ON ap.batch_id = a.batch_id AND ap.pattern = a.pattern
        JOIN redemption r ON r.id = a.redemption_id
        JOIN cheque c ON c.id = r.cheque_id
        JOIN organisation o ON o.id = r.site_id
        JOIN programme p ON p.id = r.programme_id
        LEFT JOIN invoice i ON i.batch_id = a.batch_id AND i.financer_id = ap.financer_id
             AND i.programme_id = r.programme_id AND i.type_code = '380'
        WHERE a.batch_id = :b AND ap.financer_id = :f
        ORDER BY r.redeemed_at, r.id"""), {"b": batch_id, "f": financer_id})).all())
