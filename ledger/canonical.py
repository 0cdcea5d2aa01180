"""Canonical bytes and hashes of entries: the idempotency fingerprint and the seal chain.

Both are computed in Python from plain values, so an independent auditor can recompute them
from the journal with any language: JSON with sorted keys, no spaces, UTF-8, postings sorted
by (account code, amount), instants in UTC with microseconds.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from json.encoder import encode_basestring
from typing import Any

# prev_hash of the first sealed entry.
GENESIS_HASH = "0" * 64


# What `json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
# allow_nan=False)` does, without building the encoder again at each call.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                            allow_nan=False)


def _dumps(value: Any) -> str:
    return _ENCODER.encode(value)


def canonical_memo(memo: dict[str, Any] | None) -> str | None:
    """The memo as stored (JSON text), or None."""
    return None if memo is None else _dumps(memo)


def sorted_postings(postings: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
    return sorted((str(code), int(amount)) for code, amount in postings)


def content_text(kind: str, postings: Iterable[tuple[str, int]],
                 memo: dict[str, Any] | None) -> str:
    """The canonical text that `content_hash` hashes."""
    body = {"kind": kind, "memo": memo,
            "postings": [list(p) for p in sorted_postings(postings)]}
    return _dumps(body)


def content_hash(kind: str, postings: Iterable[tuple[str, int]],
                 memo: dict[str, Any] | None) -> str:
    """Fingerprint of what an entry says (not when): equal for a faithful retry."""
    return hashlib.sha256(content_text(kind, postings, memo).encode()).hexdigest()


def utc_text(instant: datetime) -> str:
    if instant.tzinfo is not UTC:  # (the database's instants come in UTC already)
        instant = instant.astimezone(UTC)
    return instant.isoformat(timespec="microseconds")


def seal_hash(prev_hash: str, *, seq: int, entry_id: int, key: str, kind: str,
              memo: dict[str, Any] | None, created_at: datetime,
              postings: Iterable[tuple[str, int]]) -> str:
    """sha256(prev_hash ‖ canonical entry), the link of entry `seq` in the chain."""
    body = {
        "seq": seq,
        "id": entry_id,
        "key": key,
        "kind": kind,
        "memo": memo,
        "created_at": utc_text(created_at),
        "postings": [list(p) for p in sorted_postings(postings)],
    }
    return hashlib.sha256((prev_hash + _dumps(body)).encode()).hexdigest()


def entry_hashes(prev_hash: str, *, seq: int | None, entry_id: int, key: str, kind: str,
                 memo: dict[str, Any] | None, created_at: datetime,
                 postings: Iterable[tuple[str, int]]) -> tuple[str, str | None]:
    """`content_hash` and (with a `seq`) `seal_hash` of one entry, the memo and postings
    encoded once for both (the audit's pass over the whole journal): the same texts, hence
    the same hashes, as the two functions give (a property test checks it)."""
    memo_text = _dumps(memo)
    postings_text = _dumps([list(p) for p in sorted_postings(postings)])
    # A string or an int alone is encoded as `_dumps` would (json's own encode_basestring,
    # int.__repr__), without going through the encoder object: this runs for every entry.
    kind_text = encode_basestring(kind)
    content = ('{"kind":' + kind_text + ',"memo":' + memo_text + ',"postings":'
               + postings_text + "}")
    fingerprint = hashlib.sha256(content.encode()).hexdigest()
    if seq is None:
        return fingerprint, None
    # Keys in sorted order, as sort_keys gives them: created_at, id, key, kind, memo,
    # postings, seq.
    body = ('{"created_at":' + encode_basestring(utc_text(created_at))
            + ',"id":' + int.__repr__(entry_id) + ',"key":' + encode_basestring(key)
            + ',"kind":' + kind_text + ',"memo":' + memo_text + ',"postings":' + postings_text
            + ',"seq":' + int.__repr__(seq) + "}")
    return fingerprint, hashlib.sha256((prev_hash + body).encode()).hexdigest()
