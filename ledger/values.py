"""Plain values the ledger takes and returns: postings, entries to post, posted entries."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple


class Posting(NamedTuple):
    """One leg of an entry: `amount_cents` on the account named `account` (debit > 0)."""

    account: str
    amount_cents: int


PostingsIn = list[tuple[str, int]] | list[Posting]


@dataclass(frozen=True)
class NewEntry:
    """An entry to post with `post_many`."""

    key: str
    kind: str
    postings: PostingsIn
    memo: dict[str, Any] | None = None
    at: datetime | None = None


@dataclass(frozen=True)
class Entry:
    """A posted entry. `created` says whether this call wrote it or found it already there."""

    id: int
    key: str
    kind: str
    postings: tuple[Posting, ...]
    memo: dict[str, Any] | None
    created_at: datetime
    content_hash: str
    created: bool = field(default=True, compare=False)
