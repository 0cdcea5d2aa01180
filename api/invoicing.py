"""What invoicing takes from the settings: the seller, VAT rules and payment delay (issue 14)."""

from __future__ import annotations

from clearing.chorus import ChorusConfig
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


def chorus_config(settings: Settings) -> ChorusConfig | None:
    """The Chorus Pro account the settings describe, or None when the deposit is off or the
    account incomplete (invoices are then uploaded by hand)."""
    if not settings.chorus_enabled:
        return None
    needed = (settings.chorus_client_id, settings.chorus_client_secret, settings.chorus_login,
              settings.chorus_password, settings.chorus_user_id)
    if any(v in (None, "") for v in needed):
        return None
    return ChorusConfig(api_base=settings.chorus_api_base, token_url=settings.chorus_token_url,
                        client_id=settings.chorus_client_id,  # type: ignore[arg-type]
                        client_secret=settings.chorus_client_secret,  # type: ignore[arg-type]
                        login=settings.chorus_login,  # type: ignore[arg-type]
                        password=settings.chorus_password,  # type: ignore[arg-type]
                        user_id=settings.chorus_user_id)  # type: ignore[arg-type]
