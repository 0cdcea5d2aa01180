"""The ledger entries clearing writes: account codes, keys and postings (see clearing/__init__).

One function per kind of entry, returning plain postings, so that closing a batch, recording a
payment and the audit agree on exactly what the journal must hold.
"""

from __future__ import annotations

from datetime import date

Postings = list[tuple[str, int]]

BATCH_SITE_KIND = "clearing_site"
BATCH_FINANCER_KIND = "clearing_financer"
PAID_KIND = "payment"
EXPIRE_KIND = "expiry"
CREDIT_KIND = "credit_note"
OPERATOR_FEES = "operator:fees"
BANK = "bank"


def site_payable(site_id: int) -> str:
    return f"site:{site_id}:payable"


def site_payout(site_id: int) -> str:
    return f"site:{site_id}:payout"


def financer_commitment(financer_id: int) -> str:
    return f"financer:{financer_id}:commitment"


def financer_receivable(financer_id: int) -> str:
    return f"financer:{financer_id}:receivable"


def programme_available(programme_id: int) -> str:
    return f"programme:{programme_id}:available"


def programme_outstanding(programme_id: int) -> str:
    return f"programme:{programme_id}:outstanding"


def _nonzero(postings: Postings) -> Postings:
    # The ledger refuses zero legs; a rate of 0 bp simply leaves the fee leg out.
    return [(account, cents) for account, cents in postings if cents]


def batch_site_key(batch_id: int, site_id: int) -> str:
    return f"batch:{batch_id}:site:{site_id}"


def batch_site(site_id: int, *, gross_cents: int, commission_cents: int) -> Postings:
    """A site's redeemed value is cleared: what it will be paid, and the operator's commission."""
    return _nonzero([
        (site_payable(site_id), -gross_cents),
        (site_payout(site_id), gross_cents - commission_cents),
        (OPERATOR_FEES, commission_cents),
    ])


def batch_financer_key(batch_id: int, financer_id: int) -> str:
    return f"batch:{batch_id}:financer:{financer_id}"


def batch_financer(financer_id: int, *, allocated_cents: int, fee_cents: int) -> Postings:
    """A financer's allocations call its commitment; it now owes them plus the fee."""
    return _nonzero([
        (financer_commitment(financer_id), allocated_cents),
        (financer_receivable(financer_id), -(allocated_cents + fee_cents)),
        (OPERATOR_FEES, fee_cents),
    ])


def paid_key(statement_id: int) -> str:
    return f"paid:{statement_id}"


def financer_paid(financer_id: int, amount_cents: int) -> Postings:
    """Cash received from a financer settles its receivable."""
    return [(financer_receivable(financer_id), amount_cents), (BANK, -amount_cents)]


def site_paid(site_id: int, amount_cents: int) -> Postings:
    """Cash sent to a site settles its payout."""
    return [(site_payout(site_id), -amount_cents), (BANK, amount_cents)]


def expire_key(programme_id: int, day: date, run: int = 1) -> str:
    base = f"expire:{programme_id}:{day.isoformat()}"
    return base if run == 1 else f"{base}:{run}"


def expire(programme_id: int, value_cents: int) -> Postings:
    """Expired cheques' value goes back from outstanding to available."""
    return [(programme_outstanding(programme_id), -value_cents),
            (programme_available(programme_id), value_cents)]


def credit_key(programme_id: int, financer_id: int) -> str:
    return f"credit:{programme_id}:{financer_id}"


def credit(programme_id: int, financer_id: int, unused_cents: int) -> Postings:
    """A financer's unused commitment goes back to it when the programme ends."""
    return [(programme_available(programme_id), -unused_cents),
            (financer_commitment(financer_id), unused_cents)]


# ------------------------------------------------------------------ invoices (issue 14)

INVOICE_VAT_KIND = "invoice_vat"
INVOICE_PAID_KIND = "invoice_payment"
OPERATOR_VAT = "operator:vat"


def financer_vat_receivable(financer_id: int) -> str:
    return f"financer:{financer_id}:vat_receivable"


def invoice_vat_key(invoice_id: int) -> str:
    return f"invoice:{invoice_id}:vat"


def invoice_vat(financer_id: int, vat_cents: int) -> Postings:
    """The VAT an invoice adds on top of the statement (the fee line's): owed by the financer,
    collected for the State. Kept off `receivable`, which mirrors the statements."""
    return [(financer_vat_receivable(financer_id), -vat_cents), (OPERATOR_VAT, vat_cents)]


def invoice_paid_key(invoice_id: int) -> str:
    return f"invoice:{invoice_id}:paid"


def invoice_paid(financer_id: int, *, basis_cents: int, vat_cents: int) -> Postings:
    """A transfer paying an invoice settles its share of the statement and its VAT."""
    return _nonzero([(financer_receivable(financer_id), basis_cents),
                     (financer_vat_receivable(financer_id), vat_cents),
                     (BANK, -(basis_cents + vat_cents))])
