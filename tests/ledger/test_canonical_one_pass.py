"""The audit's one-pass `entry_hashes` gives exactly `content_hash` and `seal_hash`."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from ledger.canonical import content_hash, entry_hashes, seal_hash

texts = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
                max_size=30)
memos = st.none() | st.dictionaries(texts, texts | st.integers(-(2**62), 2**62), max_size=4)
postings = st.lists(st.tuples(texts, st.integers(-(2**62), 2**62)), max_size=4)
instants = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                        timezones=st.just(UTC))


@given(kind=texts, key=texts, memo=memos, lines=postings, at=instants,
       seq=st.none() | st.integers(1, 2**62), entry_id=st.integers(1, 2**62),
       prev=st.text("0123456789abcdef", min_size=64, max_size=64))
def test_one_pass_gives_both_hashes_as_the_general_functions(
    kind: str, key: str, memo: dict | None, lines: list[tuple[str, int]], at: datetime,  # type: ignore[type-arg]
    seq: int | None, entry_id: int, prev: str,
) -> None:
    fingerprint, sealed = entry_hashes(prev, seq=seq, entry_id=entry_id, key=key, kind=kind,
                                       memo=memo, created_at=at, postings=lines)
    assert fingerprint == content_hash(kind, lines, memo)
    if seq is None:
        assert sealed is None
    else:
        assert sealed == seal_hash(prev, seq=seq, entry_id=entry_id, key=key, kind=kind,
                                   memo=memo, created_at=at, postings=lines)
