"""Tables of the anomaly watch (clearing/anomalies.py): the alerts it opens, and the refused
scans (forged or unknown codes) the API records so that one of its rules can count them.

Both are written only through clearing/anomalies.py. Neither is ever read on the redemption
path: the watch looks at redemptions after the fact and never blocks a scan.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from kit.db import metadata  # noqa: F401  (naming convention set before tables are declared)

ANOMALY_RULES = ["booklet_burst", "outside_hours", "daily_spike", "booklet_spread", "refused_scans"]
# open: to review; justified: the operator found a good reason (note); site_suspended: the
# operator suspended the site's qualification from the alert (note).
ANOMALY_STATUSES = ["open", "justified", "site_suspended"]


def _in(column: str, values: list[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Anomaly(SQLModel, table=True):
    """An odd pattern found by one rule. `fingerprint` names the rule and its subject (site and
    booklet, site and day, …): the watch inserts with ON CONFLICT DO NOTHING on it, so running
    it twice opens nothing new, and a resolved alert is not opened again."""

    __tablename__ = "anomaly"
    __table_args__ = (
        sa.CheckConstraint(_in("rule", ANOMALY_RULES), name="rule"),
        sa.CheckConstraint(_in("status", ANOMALY_STATUSES), name="status"),
        sa.CheckConstraint(
            "(status = 'open') = (resolved_at IS NULL) AND "
            "(status = 'open' OR length(btrim(resolution_note)) > 0)",
            name="resolution",
        ),
        sa.Index("ix_anomaly_status_opened_at", "status", "opened_at"),
        sa.Index("ix_anomaly_programme_id", "programme_id"),
    )

    id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True)
    )
    rule: str = Field(sa_column=sa.Column(sa.String(32), nullable=False))
    fingerprint: str = Field(sa_column=sa.Column(sa.String(200), nullable=False, unique=True))
    site_id: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    programme_id: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    user_id: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    opened_at: datetime = Field(
        sa_column=sa.Column(
            sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        )
    )
    status: str = Field(
        default="open", sa_column=sa.Column(sa.String(16), nullable=False, server_default="open")
    )
    summary: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    evidence: dict[str, Any] = Field(
        default_factory=dict, sa_column=sa.Column(JSONB, nullable=False)
    )
    resolved_at: datetime | None = Field(
        default=None, sa_column=sa.Column(sa.DateTime(timezone=True))
    )
    resolved_by: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    resolution_note: str | None = Field(default=None, sa_column=sa.Column(sa.Text))


class RefusedScan(SQLModel, table=True):
    """A scan refused because its code is forged or unknown, by whom and when (no code kept:
    only the refusal's error code). Purged by the watch after a retention period."""

    __tablename__ = "refused_scan"
    __table_args__ = (
        sa.Index("ix_refused_scan_user_id_refused_at", "user_id", "refused_at"),
        sa.Index("ix_refused_scan_refused_at", "refused_at"),
    )

    id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True)
    )
    user_id: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    site_id: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    error_code: str = Field(sa_column=sa.Column(sa.String(40), nullable=False))
    refused_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))


class AnomalyWatchSite(SQLModel, table=True):
    """When a watch run last started on a site, from whichever server worker: a worker about to
    watch a site after its offline batches skips it if another worker did moments ago (that run
    read the same redemptions), and tries again at its own next run (api/anomaly_watch.py)."""

    __tablename__ = "anomaly_watch_site"

    site_id: int = Field(sa_column=sa.Column(sa.BigInteger, primary_key=True,
                                             autoincrement=False))
    watched_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))
