"""Money rules: largest-remainder split, half-up basis points, French display of amounts."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kit.money import floor_bp, format_eur, half_up_bp, largest_remainder

totals = st.integers(min_value=0, max_value=10**12)
weight_lists = st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=12).filter(
    lambda ws: sum(ws) > 0
)


@given(totals, weight_lists)
def test_largest_remainder_parts_always_sum_to_the_total(total: int, weights: list[int]) -> None:
    assert sum(largest_remainder(total, weights)) == total


@given(totals, weight_lists)
def test_largest_remainder_each_part_is_within_one_cent_of_its_exact_quota(
    total: int, weights: list[int]
) -> None:
    parts = largest_remainder(total, weights)
    wsum = sum(weights)
    for part, weight in zip(parts, weights, strict=True):
        quota = Fraction(total * weight, wsum)
        assert abs(part - quota) < 1


@given(totals, weight_lists)
def test_largest_remainder_gives_leftover_cents_to_the_largest_fractions_then_earlier_index(
    total: int, weights: list[int]
) -> None:
    parts = largest_remainder(total, weights)
    wsum = sum(weights)
    fractions = [Fraction(total * w, wsum) - (total * w // wsum) for w in weights]
    got_extra = [p - total * w // wsum for p, w in zip(parts, weights, strict=True)]
    # Whoever got an extra cent ranks (larger fraction, then earlier index) before whoever did not.
    for i, extra_i in enumerate(got_extra):
        for j, extra_j in enumerate(got_extra):
            if extra_i == 1 and extra_j == 0:
                assert (fractions[i], -i) > (fractions[j], -j)


def test_largest_remainder_ties_go_to_the_earlier_index() -> None:
    assert largest_remainder(1, [1, 1, 1]) == [1, 0, 0]
    assert largest_remainder(2, [1, 1, 1]) == [1, 1, 0]
    assert largest_remainder(100, [1, 1, 1]) == [34, 33, 33]
    # Equal fractions but not equal weights: the earlier one still wins the tie.
    assert largest_remainder(5, [1, 3, 1, 3]) == [1, 2, 0, 2]


def test_largest_remainder_gives_leftovers_to_largest_fractions_first() -> None:
    # 10 × 1/6 = 1.67, 10 × 2/6 = 3.33, 10 × 3/6 = 5: the one cent left goes to the 0.67.
    assert largest_remainder(10, [1, 2, 3]) == [2, 3, 5]
    assert largest_remainder(1000, [3, 0, 7]) == [300, 0, 700]


@given(totals, weight_lists)
def test_largest_remainder_is_deterministic(total: int, weights: list[int]) -> None:
    assert largest_remainder(total, weights) == largest_remainder(total, list(weights))


@pytest.mark.parametrize(
    ("total", "weights"), [(-1, [1]), (10, []), (10, [0, 0]), (10, [1, -1])]
)
def test_largest_remainder_refuses_meaningless_input(total: int, weights: list[int]) -> None:
    with pytest.raises(ValueError):
        largest_remainder(total, weights)


@given(
    st.integers(min_value=-(10**12), max_value=10**12), st.integers(min_value=0, max_value=10**5)
)
def test_half_up_bp_matches_decimal_round_half_up(amount: int, rate: int) -> None:
    exact = Decimal(amount) * Decimal(rate) / Decimal(10_000)
    expected = int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))
    assert half_up_bp(amount, rate) == expected


def test_half_up_bp_rounds_the_half_away_from_zero() -> None:
    assert half_up_bp(5, 1000) == 1  # 0.5 → 1
    assert half_up_bp(-5, 1000) == -1  # -0.5 → -1
    assert half_up_bp(4, 1000) == 0  # 0.4 → 0
    assert half_up_bp(1000, 250) == 25
    with pytest.raises(ValueError):
        half_up_bp(100, -1)


@given(st.integers(min_value=0, max_value=10**12), st.integers(min_value=0, max_value=10**5))
def test_floor_bp_is_the_floor_of_the_exact_product(amount: int, rate: int) -> None:
    exact = Fraction(amount * rate, 10_000)
    assert floor_bp(amount, rate) == exact.numerator // exact.denominator


@pytest.mark.parametrize(
    ("cents", "text"),
    [
        (0, "0,00\u00a0€"),
        (5, "0,05\u00a0€"),
        (1000, "10,00\u00a0€"),
        (123456, "1\u202f234,56\u00a0€"),
        (123456789, "1\u202f234\u202f567,89\u00a0€"),
        (-1050, "-10,50\u00a0€"),
        (-5, "-0,05\u00a0€"),
    ],
)
def test_format_eur_writes_amounts_the_french_way(cents: int, text: str) -> None:
    assert format_eur(cents) == text


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_format_eur_reads_back_to_the_same_cents_with_groups_of_three(cents: int) -> None:
    text = format_eur(cents)
    assert text.endswith("\u00a0€")
    number = text.removesuffix("\u00a0€")
    integer, decimals = number.split(",")
    groups = integer.lstrip("-").split("\u202f")
    assert len(decimals) == 2
    assert 1 <= len(groups[0]) <= 3 and all(len(g) == 3 for g in groups[1:])
    sign = -1 if integer.startswith("-") else 1
    assert sign * (int("".join(groups)) * 100 + int(decimals)) == cents
