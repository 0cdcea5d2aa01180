"""Tables of the double-entry journal: accounts, entries and their postings.

The journal is append-only: the database refuses UPDATE, DELETE and TRUNCATE on every table
here (migrations 0002_ledger and 0007_ledger_seal); an entry's seal is a row of its own.
Balances are never stored; they are sums of postings, so a post touches no shared row.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from kit.db import metadata  # noqa: F401  (naming convention set before tables are declared)

SHA256_HEX = "^[0-9a-f]{64}$"
XACT_DEFAULT = "CAST(CAST(pg_current_xact_id() AS text) AS bigint)"


class LedgerAccount(SQLModel, table=True):
    """An account, named by a structured code such as `programme:12:available`."""

    __tablename__ = "ledger_account"
    __table_args__ = (
        # Printable ASCII without spaces: codes sort the same everywhere, prefixes are exact.
        sa.CheckConstraint("code ~ '^[!-~]{1,200}$'", name="code_format"),
    )

    id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True)
    )
    # "C" collation: codes sort bytewise, like Python's sorted() that the canonical hashes use,
    # and prefix searches (`programme:12:%`) can use the unique index.
    code: str = Field(sa_column=sa.Column(sa.Text(collation="C"), nullable=False, unique=True))
    created_at: datetime | None = Field(
        default=None,
        sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False,
                            server_default=sa.func.now()),
    )


class LedgerEntry(SQLModel, table=True):
    """One balanced movement, identified by its idempotency key; sealed later into the chain
    (`LedgerSeal`)."""

    __tablename__ = "ledger_entry"
    __table_args__ = (
        sa.CheckConstraint("length(idempotency_key) BETWEEN 1 AND 200",
                           name="idempotency_key_length"),
        sa.CheckConstraint("length(kind) BETWEEN 1 AND 64", name="kind_length"),
        sa.CheckConstraint(f"content_hash ~ '{SHA256_HEX}'", name="content_hash_format"),
    )

    id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True)
    )
    idempotency_key: str = Field(sa_column=sa.Column(sa.Text, nullable=False, unique=True))
    kind: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    memo: dict[str, Any] | None = Field(default=None, sa_column=sa.Column(JSONB))
    created_at: datetime | None = Field(
        default=None,
        sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False,
                            server_default=sa.func.now()),
    )
    # sha256 of kind, memo and sorted postings: tells a retry from a different use of a key.
    content_hash: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    # The writer's top-level transaction id (pg_current_xact_id), always from this default:
    # how the sealer finds the entries its previous run could not see yet (ledger.sealer).
    xact: int | None = Field(
        default=None,
        sa_column=sa.Column(sa.BigInteger, nullable=False, index=True,
                            server_default=sa.text(XACT_DEFAULT)),
    )


class LedgerSeal(SQLModel, table=True):
    """An entry's link in the hash chain, written once by the sealer:
    `hash = sha256(prev_hash ‖ canonical entry)`, `prev_hash` the hash of seal `sealed_seq - 1`.

    Each sealer run's last seal also keeps where the next run looks (`open_from`,
    `open_xids`: see ledger.sealer); NULL on every other seal."""

    __tablename__ = "ledger_seal"
    __table_args__ = (
        sa.CheckConstraint("sealed_seq >= 1", name="seq_positive"),
        sa.CheckConstraint(f"hash ~ '{SHA256_HEX}' AND prev_hash ~ '{SHA256_HEX}'",
                           name="hash_format"),
        sa.CheckConstraint("(open_from IS NULL) = (open_xids IS NULL)",
                           name="snapshot_complete"),
    )

    entry_id: int = Field(
        sa_column=sa.Column(sa.BigInteger, sa.ForeignKey("ledger_entry.id"), primary_key=True)
    )
    sealed_seq: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False, unique=True))
    hash: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    prev_hash: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    open_from: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    open_xids: list[int] | None = Field(default=None,
                                        sa_column=sa.Column(sa.ARRAY(sa.BigInteger)))


class LedgerPosting(SQLModel, table=True):
    """One leg of an entry: signed cents on one account (debit > 0, credit < 0)."""

    __tablename__ = "ledger_posting"
    __table_args__ = (
        sa.CheckConstraint("amount_cents <> 0", name="amount_nonzero"),
        # Balances read only this index (index-only scans once the table is vacuumed).
        sa.Index("ix_ledger_posting_account_id", "account_id",
                 postgresql_include=["amount_cents"]),
    )

    id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True)
    )
    entry_id: int = Field(
        sa_column=sa.Column(sa.BigInteger, sa.ForeignKey("ledger_entry.id"), nullable=False,
                            index=True)
    )
    account_id: int = Field(
        sa_column=sa.Column(sa.BigInteger, sa.ForeignKey("ledger_account.id"), nullable=False)
    )
    amount_cents: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
