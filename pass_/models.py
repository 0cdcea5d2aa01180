"""Tables of the scheme: organisations, users, programmes, beneficiaries, booklets, cheques,
redemptions and stored idempotent answers.

Vocabularies are stored as text with CHECK constraints (easy to extend by migration);
hot tables carry `programme_id` and no cross-programme foreign keys so they can be
distributed by programme later (DESIGN.md §9).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSON, JSONB
from sqlmodel import Field, SQLModel

from kit.db import metadata  # noqa: F401  (naming convention set before tables are declared)


def _in(column: str, values: list[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _ts(nullable: bool = False, default_now: bool = False) -> Any:
    return sa.Column(
        sa.DateTime(timezone=True),
        nullable=nullable,
        server_default=sa.func.now() if default_now else None,
    )


KINDS = ["operator", "financer", "issuer", "site"]
QUALIFICATIONS = ["pending", "qualified", "suspended", "withdrawn"]
ROLES = ["operator_admin", "financer", "issuer_agent", "site_mediator"]
FINANCER_ROLES = ["state", "local", "operator"]
BOOKLET_STATUSES = ["in_stock", "active", "cancelled"]
CHEQUE_STATUSES = ["in_stock", "active", "redeemed", "expired", "cancelled"]


class Organisation(SQLModel, table=True):
    __tablename__ = "organisation"
    __table_args__ = (
        sa.CheckConstraint(_in("kind", KINDS), name="kind"),
        sa.CheckConstraint("siret ~ '^[0-9]{14}$'", name="siret_format"),
        sa.CheckConstraint("commune_insee ~ '^[0-9][0-9AB][0-9]{3}$'", name="insee_format"),
        sa.CheckConstraint(
            f"(kind = 'site') = (qualification IS NOT NULL) AND "
            f"(qualification IS NULL OR {_in('qualification', QUALIFICATIONS)})",
            name="qualification",
        ),
        sa.UniqueConstraint("kind", "siret", name="uq_organisation_kind_siret"),
    )

    id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True)
    )
    kind: str = Field(sa_column=sa.Column(sa.String(16), nullable=False))
    name: str = Field(sa_column=sa.Column(sa.String(200), nullable=False))
    siret: str = Field(sa_column=sa.Column(sa.String(14), nullable=False))
    commune_insee: str = Field(sa_column=sa.Column(sa.String(5), nullable=False))
    address: str | None = Field(default=None, sa_column=sa.Column(sa.String(300)))
    email: str | None = Field(default=None, sa_column=sa.Column(sa.String(254)))
    iban: str | None = Field(default=None, sa_column=sa.Column(sa.String(34)))
    bic: str | None = Field(default=None, sa_column=sa.Column(sa.String(11)))
    financer_category: str | None = Field(default=None, sa_column=sa.Column(sa.String(20)))
    qualification: str | None = Field(default=None, sa_column=sa.Column(sa.String(16)))
    qualification_changed_at: datetime | None = Field(default=None, sa_column=_ts(True))
    services: list[str] = Field(
        default_factory=list,
        sa_column=sa.Column(ARRAY(sa.String(40)), nullable=False, server_default="{}"),
    )
    stripe_customer_id: str | None = Field(default=None, sa_column=sa.Column(sa.String(64)))
    stripe_payment_method_id: str | None = Field(default=None, sa_column=sa.Column(sa.String(64)))
    created_at: datetime | None = Field(default=None, sa_column=_ts(default_now=True))
    # The site's public profile (pass_/sites.py; migration 0010): what /lieux and the data
    # standard's CSV publish once the site is qualified.
    postcode: str | None = Field(default=None, sa_column=sa.Column(sa.String(5)))
    latitude: float | None = Field(default=None, sa_column=sa.Column(sa.Float))
    longitude: float | None = Field(default=None, sa_column=sa.Column(sa.Float))
    opening_hours: str | None = Field(default=None, sa_column=sa.Column(sa.String(500)))
    stops: list[dict[str, Any]] = Field(
        default_factory=list,
        sa_column=sa.Column(JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
    )
    accessibility: str | None = Field(default=None, sa_column=sa.Column(sa.String(500)))
    phone: str | None = Field(default=None, sa_column=sa.Column(sa.String(20)))
    website: str | None = Field(default=None, sa_column=sa.Column(sa.String(300)))
    profile_updated_at: datetime | None = Field(default=None, sa_column=_ts(True))
    profile_checked_at: datetime | None = Field(default=None, sa_column=_ts(True))


class AppUser(SQLModel, table=True):
    __tablename__ = "app_user"
    __table_args__ = (
        sa.CheckConstraint(_in("role", ROLES), name="role"),
        sa.Index("uq_app_user_email_lower", sa.text("lower(email)"), unique=True),
    )

    id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True)
    )
    email: str = Field(sa_column=sa.Column(sa.String(254), nullable=False))
    password_hash: str = Field(sa_column=sa.Column(sa.String(200), nullable=False))
    organisation_id: int = Field(
        sa_column=sa.Column(
            sa.BigInteger, sa.ForeignKey("organisation.id"), nullable=False, index=True
        )
    )
    role: str = Field(sa_column=sa.Column(sa.String(20), nullable=False))
    is_active: bool = Field(
        default=True, sa_column=sa.Column(sa.Boolean, nullable=False, server_default=sa.true())
    )
    created_at: datetime | None = Field(default=None, sa_column=_ts(default_now=True))
    last_login_at: datetime | None = Field(default=None, sa_column=_ts(True))


class Programme(SQLModel, table=True):
    """A co-financing convention on a territory. `issued_value_cents` is the value of active +
    redeemed cheques, moved by one conditional UPDATE at issuance so capacity holds under
    concurrency (issuance is rare beside redemption, which never touches this row)."""

    __tablename__ = "programme"
    __table_args__ = (
        sa.CheckConstraint("face_value_cents > 0", name="face_value_positive"),
        sa.CheckConstraint("state_share_bp BETWEEN 0 AND 5000", name="state_share"),
        sa.CheckConstraint("financer_fee_bp BETWEEN 0 AND 10000", name="financer_fee"),
        sa.CheckConstraint("site_commission_bp BETWEEN 0 AND 10000", name="site_commission"),
        sa.CheckConstraint(
            "valid_from <= valid_until AND valid_until <= redeem_until", name="dates_in_order"
        ),
        sa.CheckConstraint(
            "issued_value_cents >= 0 AND issued_value_cents <= issuing_capacity_cents",
            name="capacity",
        ),
    )

    id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True)
    )
    name: str = Field(sa_column=sa.Column(sa.String(200), nullable=False))
    territory: list[str] = Field(sa_column=sa.Column(ARRAY(sa.String(5)), nullable=False))
    face_value_cents: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    booklet_sizes: list[int] = Field(sa_column=sa.Column(ARRAY(sa.Integer), nullable=False))
    valid_from: date = Field(sa_column=sa.Column(sa.Date, nullable=False))
    valid_until: date = Field(sa_column=sa.Column(sa.Date, nullable=False))
    redeem_until: date = Field(sa_column=sa.Column(sa.Date, nullable=False))
    state_share_bp: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    financer_fee_bp: int = Field(default=0, sa_column=sa.Column(sa.Integer, nullable=False))
    site_commission_bp: int = Field(default=0, sa_column=sa.Column(sa.Integer, nullable=False))
    issuing_capacity_cents: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    issued_value_cents: int = Field(
        default=0, sa_column=sa.Column(sa.BigInteger, nullable=False, server_default="0")
    )
    closed_at: datetime | None = Field(default=None, sa_column=_ts(True))
    created_at: datetime | None = Field(default=None, sa_column=_ts(default_now=True))


class ProgrammeFinancer(SQLModel, table=True):
    __tablename__ = "programme_financer"
    __table_args__ = (
        sa.CheckConstraint(_in("role", FINANCER_ROLES), name="role"),
        sa.CheckConstraint("commitment_cents >= 0", name="commitment"),
        sa.CheckConstraint("weight > 0", name="weight"),
        sa.CheckConstraint("payment_method IS NULL OR payment_method IN "
                           "('transfer', 'stripe_sepa')", name="payment_method"),
        sa.UniqueConstraint(
            "programme_id", "organisation_id", name="uq_programme_financer_programme_id"
        ),
        sa.UniqueConstraint("programme_id", "position", name="uq_programme_financer_position"),
        sa.Index(
            "uq_programme_financer_one_state",
            "programme_id",
            unique=True,
            postgresql_where=sa.text("role = 'state'"),
        ),
    )

    id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True)
    )
    programme_id: int = Field(
        sa_column=sa.Column(sa.BigInteger, sa.ForeignKey("programme.id"), nullable=False)
    )
    organisation_id: int = Field(
        sa_column=sa.Column(
            sa.BigInteger, sa.ForeignKey("organisation.id"), nullable=False, index=True
        )
    )
    position: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    role: str = Field(sa_column=sa.Column(sa.String(16), nullable=False))
    commitment_cents: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    weight: int = Field(default=1, sa_column=sa.Column(sa.Integer, nullable=False))
    demarche_families: list[str] = Field(
        default_factory=list,
        sa_column=sa.Column(ARRAY(sa.String(32)), nullable=False, server_default="{}"),
    )
    # What a public buyer gives for its invoices (issue 14): the engagement (purchase order)
    # number, BT-13, and the Chorus Pro code service, BT-10; what its Chorus Pro structure
    # requires; how it pays (None: by its category, see clearing.invoices.payment_method).
    engagement_number: str | None = Field(default=None, sa_column=sa.Column(sa.String(50)))
    service_code: str | None = Field(default=None, sa_column=sa.Column(sa.String(100)))
    requires_engagement: bool = Field(
        default=False, sa_column=sa.Column(sa.Boolean, nullable=False, server_default="false"))
    requires_service_code: bool = Field(
        default=False, sa_column=sa.Column(sa.Boolean, nullable=False, server_default="false"))
    payment_method: str | None = Field(default=None, sa_column=sa.Column(sa.String(16)))


class ProgrammeIssuer(SQLModel, table=True):
    """An issuer of a programme and its quota; `issued_cheques` moves by conditional UPDATE."""

    __tablename__ = "programme_issuer"
    __table_args__ = (
        sa.CheckConstraint("quota_cheques >= 0", name="quota"),
        sa.CheckConstraint(
            "issued_cheques >= 0 AND issued_cheques <= quota_cheques", name="issued_within_quota"
        ),
        sa.UniqueConstraint(
            "programme_id", "organisation_id", name="uq_programme_issuer_programme_id"
        ),
    )

    id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True)
    )
    programme_id: int = Field(
        sa_column=sa.Column(sa.BigInteger, sa.ForeignKey("programme.id"), nullable=False)
    )
    organisation_id: int = Field(
        sa_column=sa.Column(
            sa.BigInteger, sa.ForeignKey("organisation.id"), nullable=False, index=True
        )
    )
    quota_cheques: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    issued_cheques: int = Field(
        default=0, sa_column=sa.Column(sa.Integer, nullable=False, server_default="0")
    )


class Beneficiary(SQLModel, table=True):
    """A person helped, pseudonymous: a reference chosen by the agent, nothing more required."""

    __tablename__ = "beneficiary"
    __table_args__ = (
        sa.CheckConstraint("need_level BETWEEN 1 AND 3", name="need_level"),
        sa.CheckConstraint(
            "birth_year IS NULL OR birth_year BETWEEN 1900 AND 2100", name="birth_year"
        ),
        sa.Index(
            "uq_beneficiary_issuer_reference",
            "issuer_id",
            "reference",
            unique=True,
            postgresql_where=sa.text("reference IS NOT NULL"),
        ),
    )

    id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True)
    )
    issuer_id: int = Field(
        sa_column=sa.Column(sa.BigInteger, sa.ForeignKey("organisation.id"), nullable=False)
    )
    reference: str | None = Field(default=None, sa_column=sa.Column(sa.String(64)))
    need_level: int = Field(sa_column=sa.Column(sa.SmallInteger, nullable=False))
    birth_year: int | None = Field(default=None, sa_column=sa.Column(sa.SmallInteger))
    commune_insee: str | None = Field(default=None, sa_column=sa.Column(sa.String(5)))
    created_at: datetime | None = Field(default=None, sa_column=_ts(default_now=True))
    last_booklet_at: datetime | None = Field(default=None, sa_column=_ts(True))
    pseudonymised_at: datetime | None = Field(default=None, sa_column=_ts(True))


class BookletOrder(SQLModel, table=True):
    """A bulk order of booklets printed ahead for an issuer; its booklets start `in_stock`."""

    __tablename__ = "booklet_order"
    __table_args__ = (
        sa.CheckConstraint("booklets > 0", name="booklets"),
        sa.CheckConstraint("size > 0", name="size"),
    )

    id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True)
    )
    programme_id: int = Field(
        sa_column=sa.Column(
            sa.BigInteger, sa.ForeignKey("programme.id"), nullable=False, index=True
        )
    )
    issuer_id: int = Field(
        sa_column=sa.Column(
            sa.BigInteger, sa.ForeignKey("organisation.id"), nullable=False, index=True
        )
    )
    booklets: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    size: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    created_by: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.ForeignKey("app_user.id"))
    )
    created_at: datetime | None = Field(default=None, sa_column=_ts(default_now=True))


CHECK_CODE_DEFAULT = "upper(substr(md5((gen_random_uuid())::text), 1, 6))"


class Booklet(SQLModel, table=True):
    __tablename__ = "booklet"
    __table_args__ = (
        sa.CheckConstraint(_in("status", BOOKLET_STATUSES), name="status"),
        sa.CheckConstraint("size > 0", name="size"),
        sa.CheckConstraint(
            "status <> 'active' OR beneficiary_id IS NOT NULL", name="active_has_beneficiary"
        ),
        sa.Index("ix_booklet_issuer_created", "issuer_id", "created_at"),
    )

    id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True)
    )
    number: str = Field(sa_column=sa.Column(sa.String(20), nullable=False, unique=True))
    programme_id: int = Field(
        sa_column=sa.Column(
            sa.BigInteger, sa.ForeignKey("programme.id"), nullable=False, index=True
        )
    )
    issuer_id: int = Field(
        sa_column=sa.Column(sa.BigInteger, sa.ForeignKey("organisation.id"), nullable=False)
    )
    beneficiary_id: int | None = Field(
        default=None,
        sa_column=sa.Column(sa.BigInteger, sa.ForeignKey("beneficiary.id"), index=True),
    )
    order_id: int | None = Field(
        default=None,
        sa_column=sa.Column(sa.BigInteger, sa.ForeignKey("booklet_order.id"), index=True),
    )
    size: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    status: str = Field(sa_column=sa.Column(sa.String(16), nullable=False))
    created_by: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.ForeignKey("app_user.id"))
    )
    handed_out_by: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.ForeignKey("app_user.id"))
    )
    created_at: datetime | None = Field(default=None, sa_column=_ts(default_now=True))
    handed_out_at: datetime | None = Field(default=None, sa_column=_ts(True))
    cancelled_at: datetime | None = Field(default=None, sa_column=_ts(True))
    cancel_reason: str | None = Field(default=None, sa_column=sa.Column(sa.String(300)))
    # Printed on the cover beside the number: with it anyone holding the booklet may see what is
    # left on it (/mon-pass), nobody else. 6 hexadecimal symbols drawn by the database.
    check_code: str = Field(
        default=None,
        sa_column=sa.Column(
            sa.String(6), nullable=False, server_default=sa.text(CHECK_CODE_DEFAULT)
        ),
    )


class Cheque(SQLModel, table=True):
    """One QR code, one face value, redeemed at most once.

    The status moves only through conditional UPDATEs (`… WHERE status = 'active'`)."""

    __tablename__ = "cheque"
    __table_args__ = (
        sa.CheckConstraint(_in("status", CHEQUE_STATUSES), name="status"),
        sa.CheckConstraint("value_cents > 0", name="value_positive"),
        sa.UniqueConstraint("booklet_id", "position", name="uq_cheque_booklet_id"),
        sa.Index(
            "ix_cheque_active_redeem_until",
            "redeem_until",
            postgresql_where=sa.text("status = 'active'"),
        ),
    )

    id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True)
    )
    serial: str = Field(sa_column=sa.Column(sa.String(24), nullable=False, unique=True))
    token: str = Field(sa_column=sa.Column(sa.String(200), nullable=False))
    booklet_id: int = Field(
        sa_column=sa.Column(sa.BigInteger, sa.ForeignKey("booklet.id"), nullable=False)
    )
    programme_id: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False, index=True))
    position: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    value_cents: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    status: str = Field(sa_column=sa.Column(sa.String(16), nullable=False))
    valid_from: date = Field(sa_column=sa.Column(sa.Date, nullable=False))
    valid_until: date = Field(sa_column=sa.Column(sa.Date, nullable=False))
    redeem_until: date = Field(sa_column=sa.Column(sa.Date, nullable=False))
    activated_at: datetime | None = Field(default=None, sa_column=_ts(True))
    status_changed_at: datetime | None = Field(default=None, sa_column=_ts(True))


class Redemption(SQLModel, table=True):
    """A cheque cashed by a site. At most one live (unreversed) redemption per cheque, backed by
    a partial unique index; `batch_id` is set once by clearing (no FK: clearing sits above)."""

    __tablename__ = "redemption"
    __table_args__ = (
        sa.Index(
            "uq_redemption_live_cheque",
            "cheque_id",
            unique=True,
            postgresql_where=sa.text("reversed_at IS NULL"),
        ),
        sa.Index("ix_redemption_site_redeemed_at", "site_id", "redeemed_at"),
        sa.Index(
            "ix_redemption_unbatched",
            "redeemed_at",
            "id",
            postgresql_where=sa.text("batch_id IS NULL AND reversed_at IS NULL"),
        ),
        sa.Index("ix_redemption_batch_id", "batch_id"),
        sa.CheckConstraint("value_cents > 0", name="value_positive"),
        sa.CheckConstraint("reversed_at IS NULL OR batch_id IS NULL", name="reversed_unbatched"),
    )

    id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True)
    )
    cheque_id: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    programme_id: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    site_id: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    user_id: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    value_cents: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    service: str = Field(sa_column=sa.Column(sa.String(40), nullable=False))
    demarche_family: str | None = Field(default=None, sa_column=sa.Column(sa.String(32)))
    redeemed_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))
    scanned_at: datetime | None = Field(default=None, sa_column=_ts(True))
    reversed_at: datetime | None = Field(default=None, sa_column=_ts(True))
    batch_id: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))


class IdempotencyRecord(SQLModel, table=True):
    """The first answer given to a client's `Idempotency-Key`, replayed on retry.

    See api/idempotency.py. `status_code` 0 marks a key reserved by a transaction still
    running: never committed. Purged after a retention period by pass_/retention.py."""

    __tablename__ = "idempotency_record"
    __table_args__ = (
        sa.UniqueConstraint("user_id", "key", name="uq_idempotency_record_user_id"),
        # The purge finds old records by age, a chunk at a time (pass_/retention.py).
        sa.Index("ix_idempotency_record_created_at", "created_at"),
    )

    id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True)
    )
    user_id: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    key: str = Field(sa_column=sa.Column(sa.String(200), nullable=False))
    request_hash: str = Field(sa_column=sa.Column(sa.String(64), nullable=False))
    status_code: int = Field(sa_column=sa.Column(sa.SmallInteger, nullable=False))
    # json, not jsonb: the body is replayed byte for byte (jsonb would reorder its keys).
    response: dict[str, Any] = Field(sa_column=sa.Column(JSON, nullable=False))
    created_at: datetime | None = Field(default=None, sa_column=_ts(default_now=True))


class AccessRequest(SQLModel, table=True):
    """Someone signed in with ProConnect whom no account matches: a request the operator sees
    (an unknown SIRET, or a known organisation without an account for that e-mail). No
    account is ever created from it silently."""

    __tablename__ = "access_request"
    __table_args__ = (
        sa.Index(
            "uq_access_request_open",
            "siret",
            "email",
            unique=True,
            postgresql_where=sa.text("handled_at IS NULL"),
        ),
    )

    id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True)
    )
    siret: str = Field(sa_column=sa.Column(sa.String(14), nullable=False))
    email: str = Field(sa_column=sa.Column(sa.String(254), nullable=False))
    organisation_id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.ForeignKey("organisation.id"))
    )
    reason: str = Field(sa_column=sa.Column(sa.String(32), nullable=False))
    created_at: datetime | None = Field(default=None, sa_column=_ts(default_now=True))
    handled_at: datetime | None = Field(default=None, sa_column=_ts(True))


# --------------------------------------------------------------------------- read side at scale
# (migration 0013_read_scale; pass_/reporting.py)

# The operator's listing in keyset order, newest first (a site's: ix_redemption_site_redeemed_at).
sa.Index("ix_redemption_redeemed_at_id", Redemption.__table__.c.redeemed_at,  # type: ignore[attr-defined]
         Redemption.__table__.c.id)  # type: ignore[attr-defined]
# Cheques not handed out yet (stock) are counted from their booklets, a few per programme.
sa.Index("ix_booklet_not_handed_out", Booklet.__table__.c.programme_id,  # type: ignore[attr-defined]
         postgresql_include=["size", "status", "handed_out_at"],
         postgresql_where=sa.text("handed_out_at IS NULL"))


class FigureRollup(SQLModel, table=True):
    """A programme's figures by stage and one dimension (day, démarche family, commune of the
    site, need level), summed from the sealed journal by `reporting.refresh_rollup`."""

    __tablename__ = "figure_rollup"

    programme_id: int = Field(sa_column=sa.Column(sa.BigInteger, primary_key=True))
    dimension: str = Field(sa_column=sa.Column(sa.String(16), primary_key=True))
    key: str = Field(sa_column=sa.Column(sa.String(32), primary_key=True))
    stage: str = Field(sa_column=sa.Column(sa.String(16), primary_key=True))
    cheques: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    value_cents: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))


class FigureRollupCursor(SQLModel, table=True):
    """How far the rollup has read the chain: every seal up to `sealed_seq` is counted."""

    __tablename__ = "figure_rollup_cursor"
    __table_args__ = (sa.CheckConstraint("id = 1", name="single"),)

    id: int = Field(sa_column=sa.Column(sa.SmallInteger, primary_key=True))
    sealed_seq: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    updated_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))


class Commune(SQLModel, table=True):
    """The commune reference (INSEE code → name, postcodes, département, centre), loaded by
    `passnum load-communes` from the shipped dataset (pass_/communes.py), never fetched."""

    __tablename__ = "commune"
    __table_args__ = (
        sa.Index(
            "ix_commune_search_name",
            "search_name",
            postgresql_ops={"search_name": "text_pattern_ops"},
        ),
        sa.Index("ix_commune_postcodes", "postcodes", postgresql_using="gin"),
    )

    code: str = Field(sa_column=sa.Column(sa.String(5), primary_key=True))
    name: str = Field(sa_column=sa.Column(sa.String(100), nullable=False))
    # Lower case, without accents, hyphens as spaces: what a search compares (pass_/communes.py).
    search_name: str = Field(sa_column=sa.Column(sa.String(100), nullable=False))
    departement: str = Field(sa_column=sa.Column(sa.String(3), nullable=False))
    postcodes: list[str] = Field(
        default_factory=list,
        sa_column=sa.Column(ARRAY(sa.String(5)), nullable=False, server_default="{}"),
    )
    population: int | None = Field(default=None, sa_column=sa.Column(sa.Integer))
    latitude: float | None = Field(default=None, sa_column=sa.Column(sa.Float))
    longitude: float | None = Field(default=None, sa_column=sa.Column(sa.Float))
