"""`prepare_family` gives, member by member, exactly what `prepare` gives (no database)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import service as ledger
from ledger.errors import InvalidEntry, UnbalancedEntry

codes = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40)
amounts = st.integers(min_value=1, max_value=2**62)
values = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
                 max_size=60)


@given(debit=codes, credit=codes, amount=amounts, kind=st.sampled_from(["redemption", "t"]),
       field=st.sampled_from(["serial", "n", "clé"]), members=st.lists(values, max_size=5))
def test_each_member_is_what_prepare_gives(
    debit: str, credit: str, amount: int, kind: str, field: str, members: list[str],
) -> None:
    postings = [(debit, -amount), (credit, amount)]
    family = ledger.prepare_family(kind=kind, postings=postings, memo_field=field)
    for value in members:
        assert family(value) == ledger.prepare(kind=kind, postings=postings,
                                               memo={field: value})


def test_a_mark_inside_a_code_takes_the_general_road() -> None:
    postings = [("ledger-family-member-7c1e0b", -5), ("b", 5)]
    family = ledger.prepare_family(kind="t", postings=postings, memo_field="serial")
    assert family("x") == ledger.prepare(kind="t", postings=postings, memo={"serial": "x"})


def test_a_family_refuses_what_prepare_refuses() -> None:
    with pytest.raises(UnbalancedEntry):
        ledger.prepare_family(kind="t", postings=[("a", -5), ("b", 4)], memo_field="serial")
    with pytest.raises(InvalidEntry):
        ledger.prepare_family(kind="t", postings=[("a b", -5), ("b", 5)], memo_field="serial")
    family = ledger.prepare_family(kind="t", postings=[("a", -5), ("b", 5)], memo_field="s")
    with pytest.raises(InvalidEntry):
        family("nul\x00")
    with pytest.raises(InvalidEntry):
        ledger.prepare(kind="t", postings=[("a", -5), ("b", 5)], memo={"s": "nul\x00"})
