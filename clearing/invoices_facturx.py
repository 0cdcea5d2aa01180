"""An invoice as a Factur-X document: the EN 16931 CII XML, the human-readable PDF (reportlab,
fonts embedded), made PDF/A-3 by the `factur-x` library (which checks the XML against the
XSD it ships, embeds it as `factur-x.xml` and writes the PDF/A XMP metadata) with an sRGB
output intent, and the per-cheque CSV attached as a supporting document.

Fields, by EN 16931 business term: BT-1 number, BT-2 issue date, BT-3 type (380/381), BT-10
buyer reference (code service), BT-13 purchase order (engagement), BT-25 preceding invoice
(for a credit note), BT-27/30/31 seller name, SIRET, VAT number, BT-44/47 buyer name and
SIRET, BT-73/74 invoicing period, BT-9 due date, BG-16 payment means 58 (SEPA credit
transfer) with BT-84 IBAN and BT-86 BIC, BT-83 remittance information = the RF reference,
BG-23 VAT breakdown, BG-22 totals.
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import facturx
import reportlab
from lxml import etree
from pypdf import PdfReader, PdfWriter
from pypdf.generic import (
    ArrayObject,
    DecodedStreamObject,
    DictionaryObject,
    NameObject,
    NumberObject,
    TextStringObject,
)
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.pdfmetrics import registerFontFamily
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from clearing.export import amount, day
from clearing.invoices import METHOD_LABELS, InvoiceDetail, vat_breakdown
from kit.money import format_eur

RSM = "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100"
RAM = "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"
UDT = "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100"
QDT = "urn:un:unece:uncefact:data:standard:QualifiedDataType:100"
NSMAP = {"rsm": RSM, "ram": RAM, "udt": UDT, "qdt": QDT}
EN16931 = "urn:cen.eu:en16931:2017"
SEPA_CREDIT_TRANSFER = "58"
LATE_PAYMENT_NOTE = ("En cas de retard de paiement : pénalités au taux d'intérêt appliqué par "
                     "la Banque centrale européenne majoré de 10 points, et indemnité "
                     "forfaitaire pour frais de recouvrement de 40 € (art. L441-10 du code de "
                     "commerce). Pas d'escompte pour paiement anticipé.")


def _money(cents: int) -> str:
    return f"{Decimal(cents) / 100:.2f}"


def _rate(bp: int) -> str:
    return f"{Decimal(bp) / 100:.2f}"


def _d(value: date) -> str:
    return value.strftime("%Y%m%d")


class _X:
    """A tiny builder: `x.add(parent, "ram:Name", text, attr=…)`."""

    @staticmethod
    def add(parent: Any, tag: str, value: str | None = None, **attrs: str) -> Any:
        prefix, local = tag.split(":")
        element = etree.SubElement(parent, f"{{{NSMAP[prefix]}}}{local}")
        for k, v in attrs.items():
            element.set(k, v)
        if value is not None:
            element.text = value
        return element

    @classmethod
    def date(cls, parent: Any, tag: str, value: date) -> Any:
        holder = cls.add(parent, tag)
        cls.add(holder, "udt:DateTimeString", _d(value), format="102")
        return holder


def _party(x: type[_X], parent: Any, tag: str, party: dict[str, Any], *,
           vat_number: str | None = None) -> None:
    node = x.add(parent, tag)
    x.add(node, "ram:Name", party["name"])
    if party.get("siret"):
        legal = x.add(node, "ram:SpecifiedLegalOrganization")
        x.add(legal, "ram:ID", party["siret"], schemeID="0009")  # 0009: SIRET
    address = x.add(node, "ram:PostalTradeAddress")
    if party.get("postcode"):
        x.add(address, "ram:PostcodeCode", party["postcode"])
    if party.get("address"):
        x.add(address, "ram:LineOne", party["address"][:100])
    if party.get("city"):
        x.add(address, "ram:CityName", party["city"])
    x.add(address, "ram:CountryID", "FR")
    if vat_number:
        registration = x.add(node, "ram:SpecifiedTaxRegistration")
        x.add(registration, "ram:ID", vat_number, schemeID="VA")


def build_xml(invoice: InvoiceDetail) -> bytes:
    """The invoice's EN 16931 CII XML."""
    x = _X
    root = etree.Element(f"{{{RSM}}}CrossIndustryInvoice", nsmap=NSMAP)
    context = x.add(root, "rsm:ExchangedDocumentContext")
    x.add(x.add(context, "ram:GuidelineSpecifiedDocumentContextParameter"), "ram:ID", EN16931)
    document = x.add(root, "rsm:ExchangedDocument")
    x.add(document, "ram:ID", invoice.number)
    x.add(document, "ram:TypeCode", invoice.type_code)
    x.date(document, "ram:IssueDateTime", invoice.issue_date)
    note_text = f"Programme : {invoice.programme_name or invoice.buyer.get('programme_name')}"
    if invoice.batch_id:
        note_text += f" — lot de compensation n° {invoice.batch_id}"
    for subject, content in (("AAI", note_text), ("PMD", LATE_PAYMENT_NOTE)):
        note = x.add(document, "ram:IncludedNote")
        x.add(note, "ram:Content", content)
        x.add(note, "ram:SubjectCode", subject)

    transaction = x.add(root, "rsm:SupplyChainTradeTransaction")
    for line in invoice.lines:
        item = x.add(transaction, "ram:IncludedSupplyChainTradeLineItem")
        x.add(x.add(item, "ram:AssociatedDocumentLineDocument"), "ram:LineID", line["id"])
        x.add(x.add(item, "ram:SpecifiedTradeProduct"), "ram:Name", line["name"])
        agreement = x.add(item, "ram:SpecifiedLineTradeAgreement")
        price = x.add(agreement, "ram:NetPriceProductTradePrice")
        x.add(price, "ram:ChargeAmount", _money(line["unit_cents"]))
        delivery = x.add(item, "ram:SpecifiedLineTradeDelivery")
        x.add(delivery, "ram:BilledQuantity", f"{line['quantity']}", unitCode="C62")
        settlement = x.add(item, "ram:SpecifiedLineTradeSettlement")
        tax = x.add(settlement, "ram:ApplicableTradeTax")
        x.add(tax, "ram:TypeCode", "VAT")
        x.add(tax, "ram:CategoryCode", line["vat_category"])
        if line["vat_category"] != "O":
            x.add(tax, "ram:RateApplicablePercent", _rate(line["vat_bp"]))
        if line["allowance_cents"]:
            allowance = x.add(settlement, "ram:SpecifiedTradeAllowanceCharge")
            x.add(x.add(allowance, "ram:ChargeIndicator"), "udt:Indicator", "false")
            x.add(allowance, "ram:ActualAmount", _money(line["allowance_cents"]))
            x.add(allowance, "ram:Reason", line["allowance_reason"])
        total = x.add(settlement, "ram:SpecifiedTradeSettlementLineMonetarySummation")
        x.add(total, "ram:LineTotalAmount", _money(line["net_cents"]))

    seller = invoice.seller
    breakdown = vat_breakdown(invoice.lines)
    standard = any(g["category"] == "S" for g in breakdown)
    agreement = x.add(transaction, "ram:ApplicableHeaderTradeAgreement")
    if invoice.service_code:
        x.add(agreement, "ram:BuyerReference", invoice.service_code)
    _party(x, agreement, "ram:SellerTradeParty", seller,
           vat_number=seller.get("vat_number") if standard else None)
    _party(x, agreement, "ram:BuyerTradeParty", invoice.buyer)
    if invoice.engagement_number:
        order = x.add(agreement, "ram:BuyerOrderReferencedDocument")
        x.add(order, "ram:IssuerAssignedID", invoice.engagement_number)
    x.add(transaction, "ram:ApplicableHeaderTradeDelivery")

    settlement = x.add(transaction, "ram:ApplicableHeaderTradeSettlement")
    x.add(settlement, "ram:PaymentReference", invoice.payment_reference)
    x.add(settlement, "ram:InvoiceCurrencyCode", "EUR")
    if invoice.type_code == "380":
        means = x.add(settlement, "ram:SpecifiedTradeSettlementPaymentMeans")
        x.add(means, "ram:TypeCode", SEPA_CREDIT_TRANSFER)
        x.add(means, "ram:Information", "Virement SEPA")
        x.add(x.add(means, "ram:PayeePartyCreditorFinancialAccount"), "ram:IBANID",
              seller["iban"])
        if seller.get("bic"):
            x.add(x.add(means, "ram:PayeeSpecifiedCreditorFinancialInstitution"), "ram:BICID",
                  seller["bic"])
    for group in breakdown:
        tax = x.add(settlement, "ram:ApplicableTradeTax")
        x.add(tax, "ram:CalculatedAmount", _money(group["vat_cents"]))
        x.add(tax, "ram:TypeCode", "VAT")
        if group["category"] != "S":
            x.add(tax, "ram:ExemptionReason",
                  group.get("exemption_reason") or seller.get("vat_exemption")
                  or "Hors du champ de la TVA")
        x.add(tax, "ram:BasisAmount", _money(group["basis_cents"]))
        x.add(tax, "ram:CategoryCode", group["category"])
        if group["category"] != "O":
            x.add(tax, "ram:RateApplicablePercent", _rate(group["rate_bp"]))
    if invoice.period_end:
        period = x.add(settlement, "ram:BillingSpecifiedPeriod")
        if invoice.period_start:
            x.date(period, "ram:StartDateTime", invoice.period_start)
        x.date(period, "ram:EndDateTime", invoice.period_end)
    if invoice.due_date:
        terms = x.add(settlement, "ram:SpecifiedTradePaymentTerms")
        x.add(terms, "ram:Description",
              f"Virement à {(invoice.due_date - invoice.issue_date).days} jours en citant la "
              f"référence {invoice.payment_reference}")
        x.date(terms, "ram:DueDateDateTime", invoice.due_date)
    totals = x.add(settlement, "ram:SpecifiedTradeSettlementHeaderMonetarySummation")
    x.add(totals, "ram:LineTotalAmount", _money(invoice.basis_cents))
    x.add(totals, "ram:TaxBasisTotalAmount", _money(invoice.basis_cents))
    x.add(totals, "ram:TaxTotalAmount", _money(invoice.vat_cents), currencyID="EUR")
    x.add(totals, "ram:GrandTotalAmount", _money(invoice.total_cents))
    x.add(totals, "ram:DuePayableAmount",
          _money(invoice.total_cents if invoice.type_code == "380" else invoice.total_cents))
    if invoice.corrects:
        # The EN 16931 CII profile carries one preceding invoice; every corrected number is
        # also listed in the PDF. The latest is the reference.
        ref = x.add(settlement, "ram:InvoiceReferencedDocument")
        x.add(ref, "ram:IssuerAssignedID", invoice.corrects[-1])
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


# ------------------------------------------------------------------------------ CSV


def cheques_csv(rows: list[Any]) -> bytes:
    """The cheques an invoice charges, one row per cheque (French CSV: `;`, BOM, `12,34`)."""
    from pass_.enums import demarche_label, label

    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow(["N° de chèque", "Date d'encaissement", "Démarche", "Service",
                     "Lieu", "Commune du lieu (INSEE)", "Valeur faciale (€)",
                     "Part du financeur (€)"])
    for r in rows:
        writer.writerow([r.serial, day(r.redeemed_at),
                         demarche_label(r.demarche_family),
                         label(r.service), r.site_name, r.commune_insee,
                         amount(r.value_cents), amount(r.amount_cents)])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


# ------------------------------------------------------------------------------ PDF

SANS, SANS_BOLD = "PNInvoiceSans", "PNInvoiceSansBold"
_fonts = False


def _register_fonts() -> None:
    global _fonts
    if _fonts:
        return
    vera = Path(reportlab.__file__).parent / "fonts"
    pdfmetrics.registerFont(TTFont(SANS, str(vera / "Vera.ttf")))
    pdfmetrics.registerFont(TTFont(SANS_BOLD, str(vera / "VeraBd.ttf")))
    # <b> in a paragraph must find our bold face, not fall back to Helvetica (not embedded).
    registerFontFamily(SANS, normal=SANS, bold=SANS_BOLD, italic=SANS, boldItalic=SANS_BOLD)
    _fonts = True


def _eur(cents: int) -> str:
    return format_eur(cents).replace("\u202f", "\u00a0")


def _esc(text: str | None) -> str:
    return (text or "").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render_pdf(invoice: InvoiceDetail) -> bytes:
    """The human-readable invoice (A4, every font embedded, black on white)."""
    _register_fonts()
    body = ParagraphStyle("body", fontName=SANS, fontSize=9, leading=12)
    small = ParagraphStyle("small", parent=body, fontSize=7.5, leading=10)
    title = ParagraphStyle("title", parent=body, fontName=SANS_BOLD, fontSize=15, leading=19)
    head = ParagraphStyle("head", parent=body, fontName=SANS_BOLD, fontSize=10.5, leading=14)
    seller, buyer = invoice.seller, invoice.buyer
    kind = "Facture" if invoice.type_code == "380" else "Avoir"
    story: list[Any] = [Paragraph(f"{kind} n° {_esc(invoice.number)}", title), Spacer(1, 3 * mm)]

    def party(who: str, p: dict[str, Any], extra: list[str]) -> Paragraph:
        lines = [f"<b>{who}</b>", _esc(p.get("name"))]
        if p.get("address"):
            lines.append(_esc(p["address"]))
        if p.get("postcode") or p.get("city"):
            lines.append(_esc(f"{p.get('postcode') or ''} {p.get('city') or ''}".strip()))
        if p.get("siret"):
            lines.append(f"SIRET {_esc(p['siret'])}")
        return Paragraph("<br/>".join(lines + extra), body)

    seller_extra = []
    if seller.get("vat_number"):
        seller_extra.append(f"TVA intracommunautaire {_esc(seller['vat_number'])}")
    elif seller.get("vat_exemption"):
        seller_extra.append(_esc(seller["vat_exemption"]))
    buyer_extra = []
    if invoice.service_code:
        buyer_extra.append(f"Code service : {_esc(invoice.service_code)}")
    if invoice.engagement_number:
        buyer_extra.append(f"N° d'engagement : {_esc(invoice.engagement_number)}")
    parties = Table([[party("Émetteur", seller, seller_extra),
                      party("Destinataire", buyer, buyer_extra)]],
                    colWidths=[85 * mm, 85 * mm])
    parties.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"),
                                 ("FONTNAME", (0, 0), (-1, -1), SANS)]))
    story += [parties, Spacer(1, 4 * mm)]

    facts = [["Date d'émission", day(invoice.issue_date)],
             ["Programme", invoice.programme_name or buyer.get("programme_name") or ""]]
    if invoice.period_end:
        facts.append(["Période facturée", f"du {day(invoice.period_start) or '—'} au "
                                         f"{day(invoice.period_end)}"])
    if invoice.batch_id:
        facts.append(["Lot de compensation", f"n° {invoice.batch_id}"])
    if invoice.corrects:
        facts.append(["Factures corrigées", ", ".join(invoice.corrects)])
    story += [_grid(facts, [50 * mm, 120 * mm], body), Spacer(1, 4 * mm)]

    rows = [["Désignation", "Qté", "Prix unit.", "Remise", "Montant HT", "TVA"]]
    for line in invoice.lines:
        vat = (f"{line['vat_bp'] / 100:g} %".replace(".", ",") if line["vat_category"] == "S"
               else line["vat_category"])
        rows.append([Paragraph(_esc(line["name"]), body), str(line["quantity"]),
                     _eur(line["unit_cents"]),
                     _eur(line["allowance_cents"]) if line["allowance_cents"] else "",
                     _eur(line["net_cents"]), vat])
    table = _grid(rows, [68 * mm, 14 * mm, 22 * mm, 22 * mm, 26 * mm, 18 * mm], body,
                  header=True)
    story += [table, Spacer(1, 2 * mm)]
    if any(line["allowance_cents"] for line in invoice.lines):
        story.append(Paragraph("Remise : part de la valeur des chèques prise en charge par "
                               "les autres cofinanceurs du programme.", small))
    totals = [["Total HT", _eur(invoice.basis_cents)]]
    for group in vat_breakdown(invoice.lines):
        if group["category"] == "S":
            totals.append([f"TVA {group['rate_bp'] / 100:g} % sur {_eur(group['basis_cents'])}"
                           .replace(".", ","), _eur(group["vat_cents"])])
        else:
            totals.append([f"Hors TVA ({group['category']}) : "
                           f"{group.get('exemption_reason') or ''}", _eur(0)])
    totals.append(["Total TTC" if invoice.type_code == "380" else "Montant de l'avoir",
                   _eur(invoice.total_cents)])
    story += [Spacer(1, 3 * mm), _grid(totals, [130 * mm, 40 * mm], body, bold_last=True)]

    if invoice.type_code == "380":
        story += [Spacer(1, 5 * mm), Paragraph("Comment payer", head)]
        pay = [["Moyen de paiement", METHOD_LABELS.get(invoice.payment_method, "")],
               ["Montant", _eur(invoice.total_cents)],
               ["À payer avant le", day(invoice.due_date)],
               ["IBAN", seller.get("iban") or ""], ["BIC", seller.get("bic") or ""],
               ["Bénéficiaire", seller.get("name") or ""],
               ["Référence à indiquer", invoice.payment_reference]]
        story.append(_grid(pay, [50 * mm, 120 * mm], body))
        story.append(Paragraph(
            "Indiquez la référence telle quelle dans le virement : elle permet de rapprocher "
            "votre paiement de cette facture sans erreur.", small))
    story += [Spacer(1, 4 * mm), Paragraph(
        "Le détail chèque par chèque (n° de chèque, date, démarche, lieu, part du financeur) "
        "est joint à ce PDF (fichier cheques.csv) et se télécharge aussi depuis votre espace "
        "financeur. Cette facture contient sa version électronique Factur-X (EN 16931).",
        small), Spacer(1, 2 * mm), Paragraph(_esc(LATE_PAYMENT_NOTE), small)]

    out = io.BytesIO()
    doc = SimpleDocTemplate(out, pagesize=A4, leftMargin=20 * mm, rightMargin=20 * mm,
                            topMargin=18 * mm, bottomMargin=18 * mm,
                            title=f"{kind} {invoice.number}", author=seller.get("name"),
                            subject=f"{kind} {invoice.number}", lang="fr-FR")
    # The canvas starts every page with a default font (Helvetica, never embedded): start it
    # with ours, so that every font the file names is embedded, as PDF/A requires.
    doc.initialFontName, doc.initialFontSize = SANS, 9
    doc.build(story)
    return out.getvalue()


def _grid(rows: list[list[Any]], widths: list[float], style: ParagraphStyle, *,
          header: bool = False, bold_last: bool = False) -> Table:
    table = Table(rows, colWidths=widths, repeatRows=1 if header else 0)
    commands = [("FONTNAME", (0, 0), (-1, -1), SANS), ("FONTSIZE", (0, 0), (-1, -1), 9),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LINEBELOW", (0, 0), (-1, -1), 0.3, colors.black)]
    if header:
        commands += [("FONTNAME", (0, 0), (-1, 0), SANS_BOLD),
                     ("ALIGN", (1, 0), (-2, -1), "RIGHT")]
    if bold_last:
        commands += [("FONTNAME", (0, -1), (-1, -1), SANS_BOLD),
                     ("ALIGN", (1, 0), (1, -1), "RIGHT")]
    table.setStyle(TableStyle(commands))
    return table


# ------------------------------------------------------------------------------ PDF/A-3


def _srgb_profile() -> bytes:
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _with_output_intent(pdf: bytes) -> bytes:
    """Add the sRGB output intent PDF/A asks for (reportlab writes none)."""
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf)))
    icc = DecodedStreamObject()
    icc.set_data(_srgb_profile())
    icc.update({NameObject("/N"): NumberObject(3)})
    icc_ref = writer._add_object(icc.flate_encode())
    intent = DictionaryObject({
        NameObject("/Type"): NameObject("/OutputIntent"),
        NameObject("/S"): NameObject("/GTS_PDFA1"),
        NameObject("/OutputConditionIdentifier"): TextStringObject("sRGB IEC61966-2.1"),
        NameObject("/Info"): TextStringObject("sRGB IEC61966-2.1"),
        NameObject("/DestOutputProfile"): icc_ref,
    })
    writer._root_object[NameObject("/OutputIntents")] = ArrayObject(
        [writer._add_object(intent)])
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def facturx_pdf(invoice: InvoiceDetail, cheques: list[Any], *,
                generated_at: datetime | None = None) -> bytes:
    """The Factur-X PDF/A-3 of `invoice`, with its cheques CSV attached. Raises if the XML
    fails the XSD of the EN 16931 profile (the `factur-x` library's own check)."""
    xml = build_xml(invoice)
    pdf = _with_output_intent(render_pdf(invoice))
    kind = "Facture" if invoice.type_code == "380" else "Avoir"
    attachments = {}
    if invoice.type_code == "380":
        attachments["cheques.csv"] = {
            "filedata": cheques_csv(cheques),
            "description": "Détail chèque par chèque",
            "afrelationship": "supplement"}
    return facturx.generate_from_binary(
        pdf, xml, flavor="factur-x", level="en16931", check_xsd=True, lang="fr-FR",
        attachments=attachments, pdf_metadata={
            "author": invoice.seller.get("name") or "",
            "keywords": "Factur-X, facture",
            "title": f"{kind} {invoice.number}",
            "subject": f"{kind} {invoice.number} du {day(invoice.issue_date)} — "
                       f"{invoice.buyer.get('name')}",
        })
