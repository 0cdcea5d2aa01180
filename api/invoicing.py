"""What invoicing takes from the settings: the seller, VAT rules and payment delay (issue 14)."""

from __future__ import annotations

from clearing.invoices import InvoiceTerms, Seller, VatRule
from kit.settings import Settings


def invoice_terms(settings: Settings) -> InvoiceTerms:
    """The invoicing terms the settings describe (read once per close)."""
    return InvoiceTerms(
        seller=Seller(name=settings.operator_name, siret=settings.operator_siret,
                      vat_number=settings.operator_vat_number,
                      vat_exemption=settings.operator_vat_exemption,
                      address=settings.operator_address, postcode=settings.operator_postcode,
                      city=settings.operator_city, iban=settings.operator_iban,
                      bic=settings.operator_bic),
        face_value_vat=VatRule(
            settings.invoice_face_value_vat_category, settings.invoice_face_value_vat_bp,
            "Bon à usages multiples : hors du champ de la TVA (art. 256 ter du CGI)"
            if settings.invoice_face_value_vat_category != "S" else None),
        fee_vat=VatRule(settings.invoice_fee_vat_category, settings.invoice_fee_vat_bp,
                        settings.operator_vat_exemption
                        if settings.invoice_fee_vat_category != "S" else None),
        due_days=settings.invoice_due_days)
