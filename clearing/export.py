"""Statements as files: CSV for spreadsheets (French conventions) and PDF for accountants.

CSV: `;` separated, UTF-8 with a byte-order mark, French headers, amounts as `12,34` (no
thousands separator, so spreadsheets read numbers), dates `JJ/MM/AAAA`, CRLF line ends — what a
French spreadsheet opens without an import dialog. Text cells that a spreadsheet would take for
a formula are neutralised.

PDF (reportlab, A4): issuer and recipient with their SIRET, batch, cutoff and period, totals,
a summary of the lines, the payment status and reference, and the statement's fingerprint
(`content_hash`), which the audit recomputes.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from clearing.schemas import FinancerLine, SiteLine, StatementRead
from kit.clock import PARIS
from kit.money import format_eur
from pass_.enums import NO_DEMARCHE, label

KIND_TITLE = {
    "site": "Relevé de compensation — lieu de médiation numérique",
    "financer": "Relevé de compensation — financeur",
    "credit_note": "Avoir — engagement non consommé",
}
STATUS = {
    "open": "à payer",
    "held": "virement suspendu",
    "processing": "prélèvement en cours",
    "paid": "payé",
    "failed": "prélèvement refusé",
    "issued": "émis",
}
METHOD = {
    "sepa_transfer": "virement SEPA de l'opérateur",
    "stripe": "prélèvement SEPA (mandat)",
    "transfer": "virement bancaire du financeur",
}


@dataclass(frozen=True, slots=True)
class Issuer:
    """Who issues the statements: the operator (and the account financers pay into)."""

    name: str
    siret: str | None = None
    address: str | None = None
    iban: str | None = None
    bic: str | None = None


@dataclass(frozen=True, slots=True)
class ToPay:
    """One invoice of a financer statement, as the statement tells how to pay it."""

    number: str
    total_cents: int
    due_date: date | None
    reference: str
    iban: str
    bic: str | None


def amount(cents: int) -> str:
    """Cents as a spreadsheet reads them in French: 1234 → "12,34"."""
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100},{abs(cents) % 100:02d}"


def day(value: date | datetime | None) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        value = value.astimezone(PARIS).date()
    return value.strftime("%d/%m/%Y")


def instant(value: datetime | None) -> str:
    return value.astimezone(PARIS).strftime("%d/%m/%Y %H:%M") if value else ""


def _cell(text: str | None) -> str:
    text = text or ""
    # A cell starting with = + - @ would run as a formula in a spreadsheet.
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


# ------------------------------------------------------------------------------ CSV


def statement_csv(statement: StatementRead, *, cheques: Sequence[Any] | None = None) -> bytes:
    """The statement as a French CSV (UTF-8 with BOM, `;`), one row per cheque and nothing
    else, so that a spreadsheet can sum and filter it (totals are in the PDF). A site's rows
    are its redemptions; a financer's are the `cheques` it is charged for
    (`clearing.invoices.statement_cheques`); a credit note has one row per programme."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    if statement.kind == "site":
        writer.writerow(["N° de chèque", "Date d'encaissement", "Service", "Démarche",
                         "Programme", "Montant (€)"])
        for line in statement.lines:
            assert isinstance(line, SiteLine)
            writer.writerow([_cell(line.cheque_serial), day(line.redeemed_on),
                             _cell(label(line.service)),
                             _cell(label(line.demarche_family) if line.demarche_family
                                   else NO_DEMARCHE),
                             _cell(line.programme_name), amount(line.value_cents)])
    elif statement.kind == "financer" and cheques is not None:
        writer.writerow(["N° de chèque", "Date d'encaissement", "Programme", "Démarche",
                         "Service", "Lieu", "Commune du lieu (INSEE)", "Valeur faciale (€)",
                         "Part du financeur (€)", "Facture"])
        for c in cheques:
            writer.writerow([_cell(c.serial), day(c.redeemed_at), _cell(c.programme_name),
                             _cell(label(c.demarche_family) if c.demarche_family
                                   else NO_DEMARCHE),
                             _cell(label(c.service)), _cell(c.site_name), c.commune_insee,
                             amount(c.value_cents), amount(c.amount_cents),
                             c.invoice_number or ""])
    else:
        writer.writerow(["Programme", "Famille de démarches", "Commune du lieu (INSEE)",
                         "Nombre de chèques", "Montant (€)"])
        for line in statement.lines:
            assert isinstance(line, FinancerLine)
            writer.writerow([_cell(line.programme_name),
                             _cell(label(line.demarche_family) if line.demarche_family
                                   else ("" if statement.kind == "credit_note"
                                         else NO_DEMARCHE)),
                             line.commune_insee or "", line.cheque_count,
                             amount(line.amount_cents)])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


# ------------------------------------------------------------------------------ PDF


def _eur(cents: int) -> str:
    # The standard PDF fonts have no narrow no-break space; a no-break space reads the same.
    return format_eur(cents).replace("\u202f", "\u00a0")


def _period(statement: StatementRead) -> str:
    if statement.batch_cutoff is None:
        return ""
    end = statement.batch_cutoff.astimezone(PARIS)
    start = (f"du {instant(statement.period_start)} " if statement.period_start
             else "depuis l'origine ")
    return f"{start}au {end.strftime('%d/%m/%Y %H:%M')} (exclu)"


def statement_pdf(statement: StatementRead, *, issuer: Issuer, generated_at: datetime,
                  to_pay: Sequence[ToPay] = ()) -> bytes:
    """An A4 PDF of the statement with what a public accountant needs to book it."""
    buffer = io.BytesIO()
    styles = getSampleStyleSheet()
    small = ParagraphStyle("small", parent=styles["Normal"], fontSize=8, leading=10)
    normal = ParagraphStyle("normal", parent=styles["Normal"], fontSize=9.5, leading=12)
    number = f"Avoir n° {statement.id}" if statement.kind == "credit_note" \
        else f"Relevé n° {statement.id}"
    doc = SimpleDocTemplate(buffer, pagesize=A4, leftMargin=16 * mm, rightMargin=16 * mm,
                            topMargin=14 * mm, bottomMargin=14 * mm,
                            title=f"Pass numérique — {number}", author=issuer.name)
    story: list = [
        Paragraph(f"Pass numérique — {number}", styles["Title"]),
        Paragraph(KIND_TITLE[statement.kind], styles["Heading3"]),
    ]
    org = statement.organisation
    parties = Table([
        [Paragraph("<b>Émetteur</b>", normal), Paragraph("<b>Destinataire</b>", normal)],
        [Paragraph(_escape(issuer.name), normal), Paragraph(_escape(org.name), normal)],
        [Paragraph(f"SIRET {issuer.siret or 'non renseigné'}", normal),
         Paragraph(f"SIRET {org.siret}", normal)],
        [Paragraph(_escape(issuer.address or ""), normal),
         Paragraph(_escape(org.address or org.commune_name or f"Commune {org.commune_insee}"),
                   normal)],
    ], colWidths=[88 * mm, 88 * mm])
    parties.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"),
                                 ("BOX", (0, 0), (0, -1), 0.5, colors.grey),
                                 ("BOX", (1, 0), (1, -1), 0.5, colors.grey)]))
    story += [parties, Spacer(1, 5 * mm)]

    reference = []
    if statement.batch_id is not None:
        reference += [["Lot de compensation", f"n° {statement.batch_id}"],
                      ["Date d'arrêté", instant(statement.batch_cutoff)],
                      ["Période", _period(statement)]]
    if statement.programme_id is not None:
        reference.append(["Programme", f"n° {statement.programme_id}"])
    reference += [["Nombre de chèques", str(statement.cheque_count)],
                  ["Émis le", instant(generated_at)]]
    story += [_grid(reference, [50 * mm, 126 * mm]), Spacer(1, 5 * mm)]

    story += [Paragraph("Montants", styles["Heading4"]), _grid(_totals(statement),
                                                               [110 * mm, 66 * mm],
                                                               right=True),
              Spacer(1, 5 * mm)]
    story += [Paragraph("Synthèse des lignes", styles["Heading4"]),
              _grid(_summary(statement), None, header=True, right=True), Spacer(1, 5 * mm)]
    if statement.programmes:
        rows = [["Programme", "Engagement", "Déjà alloué", "Ce lot", "Cumul", "Reste"]]
        rows += [[_short(p.programme_name), _eur(p.commitment_cents),
                  _eur(p.allocated_before_cents), _eur(p.allocated_cents),
                  _eur(p.cumulative_cents), _eur(p.remaining_cents)]
                 for p in statement.programmes]
        story += [Paragraph("Engagements", styles["Heading4"]),
                  _grid(rows, None, header=True, right=True), Spacer(1, 5 * mm)]

    payment = [["Statut", STATUS.get(statement.status, statement.status)]]
    if statement.payment_method:
        payment.append(["Mode de règlement", METHOD.get(statement.payment_method, "")])
    if statement.hold_reason:
        payment.append(["Motif de suspension", statement.hold_reason])
    if statement.payment_reference:
        payment.append(["Référence du paiement", statement.payment_reference])
    if statement.paid_cents is not None:
        payment.append(["Montant réglé", _eur(statement.paid_cents)])
    if statement.paid_on:
        payment.append(["Réglé le", day(statement.paid_on)])
    if statement.failure_message:
        payment.append(["Dernier incident", statement.failure_message])
    story += [Paragraph("Règlement", styles["Heading4"]), _grid(payment, [50 * mm, 126 * mm]),
              Spacer(1, 5 * mm)]
    if statement.kind == "financer" and statement.status in ("open", "failed"):
        story += _how_to_pay(statement, issuer, to_pay, styles, small)
    story.append(Paragraph(
        f"Empreinte du relevé (SHA-256, recalculée par l'audit) : "
        f"<font face='Courier'>{statement.content_hash}</font>", small))
    story.append(Paragraph(
        "Montants en euros. " + ("Le détail chèque par chèque (une ligne par chèque) figure "
                                 "dans l'export CSV du relevé."
                                 if statement.kind != "credit_note" else
                                 "L'avoir porte sur l'engagement non consommé du programme."),
        small))
    doc.build(story)
    return buffer.getvalue()


def _how_to_pay(statement: StatementRead, issuer: Issuer, to_pay: Sequence[ToPay],
                styles: Any, small: ParagraphStyle) -> list[Any]:
    """« À régler »: how to pay — per invoice, the amount, due date, IBAN and reference."""
    out: list[Any] = [Paragraph("Comment régler", styles["Heading4"])]
    if to_pay:
        rows = [["Facture", "Montant TTC", "À payer avant le", "Référence à indiquer"]]
        rows += [[p.number, _eur(p.total_cents), day(p.due_date), p.reference] for p in to_pay]
        out.append(_grid(rows, [38 * mm, 34 * mm, 34 * mm, 70 * mm], header=True))
        first = to_pay[0]
        out.append(_grid([["Virement à l'ordre de", issuer.name], ["IBAN", first.iban],
                          ["BIC", first.bic or ""]], [50 * mm, 126 * mm]))
        out.append(Paragraph(
            "Un virement par facture, avec sa référence telle quelle : il est rapproché de la "
            "facture sans erreur. Les factures (Factur-X, acceptées par Chorus Pro) se "
            "téléchargent dans votre espace financeur.", small))
    else:
        out.append(_grid([["Virement à l'ordre de", issuer.name], ["IBAN", issuer.iban or ""],
                          ["BIC", issuer.bic or ""],
                          ["Référence à indiquer", f"RELEVE {statement.id}"],
                          ["Montant", _eur(statement.net_cents)]], [50 * mm, 126 * mm]))
    out.append(Spacer(1, 5 * mm))
    return out


def _totals(statement: StatementRead) -> list[list[str]]:
    if statement.kind == "site":
        return [["Total brut des chèques encaissés", _eur(statement.gross_cents)],
                ["Commission de l'opérateur", _eur(statement.fee_cents)],
                ["Net à verser au lieu", _eur(statement.net_cents)]]
    if statement.kind == "financer":
        return [["Total alloué (pollueur-payeur)", _eur(statement.gross_cents)],
                ["Frais de gestion", _eur(statement.fee_cents)],
                ["Montant dû", _eur(statement.net_cents)]]
    return [["Engagement non consommé rendu", _eur(statement.net_cents)]]


def _summary(statement: StatementRead) -> list[list[str]]:
    if statement.kind == "site":
        groups: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        for line in statement.lines:
            assert isinstance(line, SiteLine)
            group = groups[(line.programme_name, label(line.service))]
            group[0] += 1
            group[1] += line.value_cents
        return [["Programme", "Service", "Chèques", "Montant"]] + [
            [_short(p), _short(s, 40), str(n), _eur(c)]
        for (p, s), (n, c) in sorted(groups.items())]
    families: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for line in statement.lines:
        assert isinstance(line, FinancerLine)
        family = label(line.demarche_family) if line.demarche_family else NO_DEMARCHE
        group = families[(line.programme_name, family)]
        group[0] += line.cheque_count
        group[1] += line.amount_cents
    head = "Famille de démarches" if statement.kind == "financer" else ""
    return [["Programme", head, "Chèques", "Montant"]] + [
        [_short(p), _short(f, 40) if head else "", str(n), _eur(c)]
        for (p, f), (n, c) in sorted(families.items())]


def _grid(rows: list[list[str]], widths: list[float] | None, *, header: bool = False,
          right: bool = False) -> Table:
    table = Table(rows, colWidths=widths, repeatRows=1 if header else 0)
    style = [("FONTSIZE", (0, 0), (-1, -1), 9), ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
             ("VALIGN", (0, 0), (-1, -1), "TOP")]
    if header:
        style += [("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e3e3fd")),
                  ("FONTNAME", (0, 0), (-1, 0), "Helvetica-Bold")]
    if right:
        style.append(("ALIGN", (-1, 0 if not header else 1), (-1, -1), "RIGHT"))
    table.setStyle(TableStyle(style))
    return table


def _short(text: str, limit: int = 48) -> str:
    """Table cells do not wrap: long names are cut (the CSV keeps them whole)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
