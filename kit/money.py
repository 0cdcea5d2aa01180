"""Money in integer cents and rates in basis points; the one place that rounds."""

from __future__ import annotations

from collections.abc import Sequence

BP = 10_000


def floor_bp(amount_cents: int, rate_bp: int) -> int:
    """floor(amount × rate / 10000), for non-negative amounts."""
    if amount_cents < 0 or rate_bp < 0:
        raise ValueError("negative amount or rate")
    return amount_cents * rate_bp // BP


def half_up_bp(amount_cents: int, rate_bp: int) -> int:
    """amount × rate / 10000 rounded half up (away from zero for the half), exact in integers."""
    if rate_bp < 0:
        raise ValueError("negative rate")
    sign = -1 if amount_cents < 0 else 1
    return sign * ((abs(amount_cents) * rate_bp * 2 + BP) // (2 * BP))


def largest_remainder(total: int, weights: Sequence[int]) -> list[int]:
    """Split `total` cents over `weights` with the largest-remainder method.

    Each part is floor(total × w / W); the leftover cents go one by one to the largest
    fractional parts, ties to the earlier weight (declared order). Parts sum to `total`.
    """
    if total < 0:
        raise ValueError("negative total")
    if not weights or any(w < 0 for w in weights):
        raise ValueError("weights must be non-negative and non-empty")
    wsum = sum(weights)
    if wsum == 0:
        raise ValueError("weights sum to zero")
    parts = [total * w // wsum for w in weights]
    remainders = [total * w % wsum for w in weights]
    leftover = total - sum(parts)
    order = sorted(range(len(weights)), key=lambda i: (-remainders[i], i))
    for i in order[:leftover]:
        parts[i] += 1
    return parts


def format_eur(cents: int) -> str:
    """French display of an amount: 1 234,56 €."""
    sign = "-" if cents < 0 else ""
    euros, rest = divmod(abs(cents), 100)
    grouped = f"{euros:,}".replace(",", "\u202f")
    return f"{sign}{grouped},{rest:02d}\u00a0€"
