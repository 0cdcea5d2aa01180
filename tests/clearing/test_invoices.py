"""Invoices (issue 14): numbering without gaps, RF references, amounts to the cent against the
statements, and the Factur-X PDF/A-3 read back — the XML extracted from the PDF with the
`factur-x` library and checked field by field, the attached per-cheque CSV, embedded fonts and
the sRGB output intent."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta

import facturx
import pytest
from lxml import etree
from pypdf import PdfReader
from sqlalchemy import text

from clearing.batches import close_batch
from clearing.invoices import (
    InvoiceTerms,
    Seller,
    cheque_rows,
    get_invoice,
    list_invoices,
    next_number,
    rf_is_valid,
    rf_reference,
    split_fee,
)
from clearing.invoices_facturx import build_xml, facturx_pdf
from kit.clock import paris_day, utcnow
from pass_.enums import DemarcheFamily
from pass_.tokens import Keyring
from tests.clearing.factories import (
    issue_cheques,
    make_scheme,
    make_site,
    paris,
    redeem,
    unique_cutoff,
)

NS = {"rsm": "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100",
      "ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100",
      "udt": "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100"}

SELLER = Seller(name="Opérateur du Pass numérique", siret="13002603200016",
                vat_number="FR12130026032", address="20 avenue de Ségur", postcode="75007",
                city="Paris", iban="FR7630006000011234567890189", bic="AGRIFRPP")
TERMS = InvoiceTerms(seller=SELLER)


@pytest.fixture(scope="module")
def keyring(tmp_path_factory: pytest.TempPathFactory) -> Keyring:
    return Keyring.load_or_create(tmp_path_factory.mktemp("clearing-invoices") / "keys")


@pytest.fixture
async def invoiced(session, keyring):  # type: ignore[no-untyped-def]
    """11 cheques of 10.03 € (State 50 %, Département 50 %, 1.5 % fee), one batch."""
    scheme = await make_scheme(session, keyring, face_value_cents=1003, financer_fee_bp=150)
    await session.execute(text("""
        UPDATE programme_financer SET engagement_number = 'EJ-2024-0042',
               service_code = 'SERV-NUM' WHERE programme_id = :p AND position = 1"""),
        {"p": scheme.id})
    site = await make_site(session)
    for i, cheque in enumerate(await issue_cheques(session, scheme, 11)):
        await redeem(session, scheme, site, cheque, at=paris(2024, 1, 2 + i, 14, 5),
                     family=DemarcheFamily.caf if i % 3 == 0 else None)
    batch, _ = await close_batch(session, cutoff=unique_cutoff(), now=utcnow(),
                                 invoice_terms=TERMS)
    return scheme, batch


def test_rf_references_follow_iso_11649() -> None:
    assert rf_reference("539007547034") == "RF18539007547034"  # the standard's own example
    assert rf_is_valid("RF18 5390 0754 7034")
    assert not rf_is_valid("RF19539007547034")
    ref = rf_reference("PN2026000123")
    assert rf_is_valid(ref) and ref.endswith("PN2026000123")


def test_a_fee_is_split_over_programmes_to_the_cent() -> None:
    assert split_fee(101, {1: 1, 2: 1}) == {1: 51, 2: 50}
    assert sum(split_fee(7, {3: 10, 1: 7, 2: 3}).values()) == 7
    assert split_fee(0, {1: 5}) == {1: 0}


async def test_numbers_have_no_gaps_even_when_a_close_is_rolled_back(session) -> None:
    year = 2091
    first, number = await next_number(session, year)
    assert number == f"PN-{year}-{first:06d}"
    try:
        async with session.begin_nested():
            await next_number(session, year)
            raise RuntimeError("the close fails after taking a number")
    except RuntimeError:
        pass
    second, _ = await next_number(session, year)
    assert second == first + 1


async def test_a_batch_gives_one_invoice_per_financer_and_programme_summing_to_the_statements(
        session, invoiced) -> None:
    scheme, batch = invoiced
    found = await list_invoices(session, batch_id=batch.id)
    assert sorted(i.financer_id for i in found) == sorted(f.id for f in scheme.financers)
    statements = dict((await session.execute(text(
        "SELECT organisation_id, net_cents FROM statement WHERE batch_id = :b "
        "AND kind = 'financer'"), {"b": batch.id})).all())
    assert sum(i.basis_cents for i in found) == sum(statements.values())
    numbers = sorted(int(i.number.rsplit("-", 1)[1]) for i in found)
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    for invoice in found:
        assert invoice.type_code == "380" and invoice.status == "issued"
        assert invoice.basis_cents == statements[invoice.financer_id]
        assert rf_is_valid(invoice.payment_reference)
        assert invoice.due_date == invoice.issue_date + timedelta(days=30)
        cheques = [ln for ln in invoice.lines if ln["kind"] == "cheques"]
        assert sum(ln["quantity"] for ln in cheques) == 11
        for line in cheques:
            assert line["unit_cents"] == 1003
            assert line["net_cents"] == line["quantity"] * 1003 - line["allowance_cents"]
        fee = [ln for ln in invoice.lines if ln["kind"] == "fee"]
        assert len(fee) == 1 and fee[0]["vat_bp"] == 2000
        # VAT on the fee only, rounded once: 20 % of the fee line.
        assert invoice.vat_cents == (fee[0]["net_cents"] * 2 + 5) // 10
        assert invoice.total_cents == invoice.basis_cents + invoice.vat_cents
    # Closing the same cutoff again issues nothing new.
    again, created = await close_batch(session, cutoff=batch.cutoff, now=utcnow(),
                                       invoice_terms=TERMS)
    assert not created
    assert len(await list_invoices(session, batch_id=batch.id)) == len(found)


async def test_the_facturx_pdf_carries_every_field_and_passes_the_xsd(session, invoiced) -> None:
    scheme, batch = invoiced
    dept = scheme.financer_id(1)
    invoice = next(i for i in await list_invoices(session, batch_id=batch.id)
                   if i.financer_id == dept)
    invoice = await get_invoice(session, invoice.id)
    rows = await cheque_rows(session, invoice)
    pdf = facturx_pdf(invoice, rows)

    # The XML, extracted from the PDF by the library, read field by field.
    filename, xml = facturx.get_xml_from_pdf(pdf, check_xsd=True)
    assert filename == "factur-x.xml"
    assert facturx.xml_check_xsd(xml, flavor="factur-x", level="en16931")
    tree = etree.fromstring(xml)

    def one(path: str) -> str:
        found = tree.xpath(path, namespaces=NS)
        assert len(found) == 1, path
        return found[0] if isinstance(found[0], str) else found[0].text

    assert one("//ram:GuidelineSpecifiedDocumentContextParameter/ram:ID/text()") == \
        "urn:cen.eu:en16931:2017"
    assert one("/rsm:CrossIndustryInvoice/rsm:ExchangedDocument/ram:ID") == invoice.number
    assert one("//rsm:ExchangedDocument/ram:TypeCode") == "380"
    assert one("//rsm:ExchangedDocument/ram:IssueDateTime/udt:DateTimeString") == \
        invoice.issue_date.strftime("%Y%m%d")
    assert one("//ram:BuyerReference") == "SERV-NUM"
    assert one("//ram:BuyerOrderReferencedDocument/ram:IssuerAssignedID") == "EJ-2024-0042"
    assert one("//ram:SellerTradeParty/ram:Name") == SELLER.name
    assert one("//ram:SellerTradeParty/ram:SpecifiedLegalOrganization/ram:ID") == SELLER.siret
    assert one("//ram:SellerTradeParty/ram:SpecifiedTaxRegistration/ram:ID") == \
        SELLER.vat_number
    buyer = scheme.financers[1]
    assert one("//ram:BuyerTradeParty/ram:Name") == buyer.name
    assert one("//ram:BuyerTradeParty/ram:SpecifiedLegalOrganization/ram:ID") == buyer.siret
    assert one("//ram:BuyerTradeParty/ram:SpecifiedLegalOrganization/ram:ID/@schemeID") == \
        "0009"
    assert one("//ram:PaymentReference") == invoice.payment_reference
    assert one("//ram:InvoiceCurrencyCode") == "EUR"
    assert one("//ram:SpecifiedTradeSettlementPaymentMeans/ram:TypeCode") == "58"
    assert one("//ram:PayeePartyCreditorFinancialAccount/ram:IBANID") == SELLER.iban
    assert one("//ram:PayeeSpecifiedCreditorFinancialInstitution/ram:BICID") == SELLER.bic
    assert one("//ram:BillingSpecifiedPeriod/ram:EndDateTime/udt:DateTimeString") == \
        (paris_day(batch.cutoff) - timedelta(days=1)).strftime("%Y%m%d")
    assert one("//ram:SpecifiedTradePaymentTerms/ram:DueDateDateTime/udt:DateTimeString") == \
        invoice.due_date.strftime("%Y%m%d")

    def cents(path: str) -> int:
        return round(float(one(path)) * 100)

    summation = "//ram:SpecifiedTradeSettlementHeaderMonetarySummation/"
    assert cents(summation + "ram:TaxBasisTotalAmount") == invoice.basis_cents
    assert cents(summation + "ram:TaxTotalAmount") == invoice.vat_cents
    assert cents(summation + "ram:GrandTotalAmount") == invoice.total_cents
    assert cents(summation + "ram:DuePayableAmount") == invoice.total_cents
    items = tree.xpath("//ram:IncludedSupplyChainTradeLineItem", namespaces=NS)
    assert len(items) == len(invoice.lines)
    line_total = 0
    for item, line in zip(items, invoice.lines, strict=True):
        assert item.xpath("string(.//ram:SpecifiedTradeProduct/ram:Name)",
                          namespaces=NS) == line["name"]
        assert int(item.xpath("string(.//ram:BilledQuantity)", namespaces=NS)) == \
            line["quantity"]
        assert item.xpath("string(.//ram:ApplicableTradeTax/ram:CategoryCode)",
                          namespaces=NS) == line["vat_category"]
        total = round(float(item.xpath("string(.//ram:LineTotalAmount)", namespaces=NS)) * 100)
        assert total == line["net_cents"]
        line_total += total
    assert line_total == invoice.basis_cents
    taxes = tree.xpath("//ram:ApplicableHeaderTradeSettlement/ram:ApplicableTradeTax",
                       namespaces=NS)
    assert sorted(t.xpath("string(ram:CategoryCode)", namespaces=NS) for t in taxes) == ["O", "S"]

    # PDF/A-3: XMP says so, every font is embedded, an sRGB output intent, the CSV attached.
    reader = PdfReader(io.BytesIO(pdf))
    root = reader.trailer["/Root"]
    xmp = root["/Metadata"].get_object().get_data().decode()
    assert "<pdfaid:part>3</pdfaid:part>" in xmp or 'pdfaid:part="3"' in xmp
    intent = root["/OutputIntents"][0].get_object()
    assert intent["/S"] == "/GTS_PDFA1"
    assert len(intent["/DestOutputProfile"].get_object().get_data()) > 100
    for page in reader.pages:
        for font in page["/Resources"]["/Font"].values():
            font = font.get_object()
            descendant = font.get("/DescendantFonts")
            descriptor = (descendant[0].get_object() if descendant else font)["/FontDescriptor"]
            assert "/FontFile2" in descriptor.get_object(), font["/BaseFont"]
    attachments = reader.attachments
    assert set(attachments) == {"factur-x.xml", "cheques.csv"}
    table = list(csv.reader(io.StringIO(attachments["cheques.csv"][0].decode("utf-8-sig")),
                            delimiter=";"))
    assert table[0][0] == "N° de chèque"
    assert len(table) == 1 + 11  # one row per cheque, no total line
    parts = sum(int(r[7].replace(",", "")) for r in table[1:])
    assert parts == sum(ln["net_cents"] for ln in invoice.lines if ln["kind"] == "cheques")


async def test_a_credit_note_refers_to_the_invoices_it_corrects(session, keyring) -> None:
    from clearing.expiry import close_programme

    scheme = await make_scheme(session, keyring)
    site = await make_site(session)
    cheque = (await issue_cheques(session, scheme, 1))[0]
    await redeem(session, scheme, site, cheque, at=paris(2024, 1, 3))
    await close_batch(session, cutoff=unique_cutoff(), now=utcnow(), invoice_terms=TERMS)
    await close_programme(session, programme_id=scheme.id, today=date(2025, 2, 8),
                          now=utcnow())
    mine = [i for i in await list_invoices(session, financer_id=scheme.financer_id(0))
            if i.programme_id == scheme.id]
    invoice = next(i for i in mine if i.type_code == "380")
    note = next(i for i in mine if i.type_code == "381")
    assert note.corrects == [invoice.number]
    assert note.total_cents == 500_000 - 500  # the commitment not used
    assert note.seller == invoice.seller
    xml = build_xml(note)
    assert facturx.xml_check_xsd(xml, flavor="factur-x", level="en16931")
    tree = etree.fromstring(xml)
    assert tree.xpath("string(//ram:InvoiceReferencedDocument/ram:IssuerAssignedID)",
                      namespaces=NS) == invoice.number
    assert tree.xpath("string(//rsm:ExchangedDocument/ram:TypeCode)", namespaces=NS) == "381"


async def test_face_value_can_be_exempt_so_that_a_fee_at_20_percent_may_share_the_invoice(
        session, keyring) -> None:
    """EN 16931 BR-O-11 forbids mixing category O with another on one invoice; an operator
    with a fee sets the face value to E (exempt, rate 0, with its reason), which may."""
    from clearing.invoices import VatRule

    scheme = await make_scheme(session, keyring, financer_fee_bp=200)
    site = await make_site(session)
    for i, cheque in enumerate(await issue_cheques(session, scheme, 3)):
        await redeem(session, scheme, site, cheque, at=paris(2024, 1, 4 + i))
    terms = InvoiceTerms(seller=SELLER, face_value_vat=VatRule(
        "E", 0, "Bon à usages multiples : hors du champ de la TVA (art. 256 ter du CGI)"))
    batch, _ = await close_batch(session, cutoff=unique_cutoff(), now=utcnow(),
                                 invoice_terms=terms)
    invoice = (await list_invoices(session, batch_id=batch.id))[0]
    xml = build_xml(invoice)
    assert facturx.xml_check_xsd(xml, flavor="factur-x", level="en16931")
    tree = etree.fromstring(xml)
    taxes = tree.xpath("//ram:ApplicableHeaderTradeSettlement/ram:ApplicableTradeTax",
                       namespaces=NS)
    by_category = {t.xpath("string(ram:CategoryCode)", namespaces=NS): t for t in taxes}
    assert set(by_category) == {"E", "S"}
    exempt = by_category["E"]
    assert exempt.xpath("string(ram:RateApplicablePercent)", namespaces=NS) == "0.00"
    assert "256 ter" in exempt.xpath("string(ram:ExemptionReason)", namespaces=NS)
    assert by_category["S"].xpath("string(ram:RateApplicablePercent)", namespaces=NS) == "20.00"
