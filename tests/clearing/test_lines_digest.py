"""A financer statement's lines digest, kept as a running hash over lines given in order (the
audit's road for statements of a million lines), equals the digest of the whole list."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from clearing.batches import OrderedLinesDigest, financer_lines_digest

names = st.none() | st.sampled_from(["", "caf", "CAF", "impots", "2A004", "20004", "é", "e"])
lines = st.lists(st.tuples(st.integers(1, 5), names, names, st.integers(0, 99),
                           st.integers(0, 10**9)), max_size=12)


def _key(line: tuple) -> tuple:  # type: ignore[type-arg]
    return line[0], line[1] or "", line[2] or ""


@given(lines)
def test_lines_given_in_order_hash_as_the_whole_list(given_lines: list[tuple]) -> None:  # type: ignore[type-arg]
    digest = OrderedLinesDigest()
    for line in sorted(given_lines, key=_key):
        digest.add(line)
    assert digest.ordered
    assert digest.count == len(given_lines)
    assert digest.hexdigest() == financer_lines_digest(given_lines)


@given(lines)
def test_a_line_out_of_order_is_told(given_lines: list[tuple]) -> None:  # type: ignore[type-arg]
    digest = OrderedLinesDigest()
    for line in given_lines:
        digest.add(line)
    keys = [_key(line) for line in given_lines]
    assert digest.ordered == (keys == sorted(keys))
