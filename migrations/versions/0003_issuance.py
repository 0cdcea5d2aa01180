"""programmes, beneficiaries, booklets, cheques

Revision ID: 0003_issuance
Revises: 0002_ledger
"""

from collections.abc import Sequence

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401
from sqlalchemy.dialects import postgresql

revision: str = "0003_issuance"
down_revision: str | None = "0002_ledger"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "programme",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("territory", postgresql.ARRAY(sa.String(length=5)), nullable=False),
        sa.Column("face_value_cents", sa.BigInteger(), nullable=False),
        sa.Column("booklet_sizes", postgresql.ARRAY(sa.Integer()), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=False),
        sa.Column("redeem_until", sa.Date(), nullable=False),
        sa.Column("state_share_bp", sa.Integer(), nullable=False),
        sa.Column("financer_fee_bp", sa.Integer(), nullable=False),
        sa.Column("site_commission_bp", sa.Integer(), nullable=False),
        sa.Column("issuing_capacity_cents", sa.BigInteger(), nullable=False),
        sa.Column("issued_value_cents", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("face_value_cents > 0", name=op.f("ck_programme_face_value_positive")),
        sa.CheckConstraint(
            "financer_fee_bp BETWEEN 0 AND 10000", name=op.f("ck_programme_financer_fee")
        ),
        sa.CheckConstraint(
            "issued_value_cents >= 0 AND issued_value_cents <= issuing_capacity_cents",
            name=op.f("ck_programme_capacity"),
        ),
        sa.CheckConstraint(
            "site_commission_bp BETWEEN 0 AND 10000", name=op.f("ck_programme_site_commission")
        ),
        sa.CheckConstraint(
            "state_share_bp BETWEEN 0 AND 5000", name=op.f("ck_programme_state_share")
        ),
        sa.CheckConstraint(
            "valid_from <= valid_until AND valid_until <= redeem_until",
            name=op.f("ck_programme_dates_in_order"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_programme")),
    )
    op.create_table(
        "beneficiary",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("issuer_id", sa.BigInteger(), nullable=False),
        sa.Column("reference", sa.String(length=64), nullable=True),
        sa.Column("need_level", sa.SmallInteger(), nullable=False),
        sa.Column("birth_year", sa.SmallInteger(), nullable=True),
        sa.Column("commune_insee", sa.String(length=5), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("last_booklet_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("pseudonymised_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "birth_year IS NULL OR birth_year BETWEEN 1900 AND 2100",
            name=op.f("ck_beneficiary_birth_year"),
        ),
        sa.CheckConstraint("need_level BETWEEN 1 AND 3", name=op.f("ck_beneficiary_need_level")),
        sa.ForeignKeyConstraint(
            ["issuer_id"], ["organisation.id"], name=op.f("fk_beneficiary_issuer_id_organisation")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_beneficiary")),
    )
    op.create_index(
        "uq_beneficiary_issuer_reference",
        "beneficiary",
        ["issuer_id", "reference"],
        unique=True,
        postgresql_where=sa.text("reference IS NOT NULL"),
    )
    op.create_table(
        "programme_financer",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("programme_id", sa.BigInteger(), nullable=False),
        sa.Column("organisation_id", sa.BigInteger(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("commitment_cents", sa.BigInteger(), nullable=False),
        sa.Column("weight", sa.Integer(), nullable=False),
        sa.Column(
            "demarche_families",
            postgresql.ARRAY(sa.String(length=32)),
            server_default="{}",
            nullable=False,
        ),
        sa.CheckConstraint(
            "role IN ('state', 'local', 'operator')", name=op.f("ck_programme_financer_role")
        ),
        sa.CheckConstraint("commitment_cents >= 0", name=op.f("ck_programme_financer_commitment")),
        sa.CheckConstraint("weight > 0", name=op.f("ck_programme_financer_weight")),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisation.id"],
            name=op.f("fk_programme_financer_organisation_id_organisation"),
        ),
        sa.ForeignKeyConstraint(
            ["programme_id"],
            ["programme.id"],
            name=op.f("fk_programme_financer_programme_id_programme"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_programme_financer")),
        sa.UniqueConstraint(
            "programme_id", "organisation_id", name="uq_programme_financer_programme_id"
        ),
        sa.UniqueConstraint("programme_id", "position", name="uq_programme_financer_position"),
    )
    op.create_index(
        op.f("ix_programme_financer_organisation_id"),
        "programme_financer",
        ["organisation_id"],
        unique=False,
    )
    op.create_index(
        "uq_programme_financer_one_state",
        "programme_financer",
        ["programme_id"],
        unique=True,
        postgresql_where=sa.text("role = 'state'"),
    )
    op.create_table(
        "programme_issuer",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("programme_id", sa.BigInteger(), nullable=False),
        sa.Column("organisation_id", sa.BigInteger(), nullable=False),
        sa.Column("quota_cheques", sa.Integer(), nullable=False),
        sa.Column("issued_cheques", sa.Integer(), server_default="0", nullable=False),
        sa.CheckConstraint(
            "issued_cheques >= 0 AND issued_cheques <= quota_cheques",
            name=op.f("ck_programme_issuer_issued_within_quota"),
        ),
        sa.CheckConstraint("quota_cheques >= 0", name=op.f("ck_programme_issuer_quota")),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisation.id"],
            name=op.f("fk_programme_issuer_organisation_id_organisation"),
        ),
        sa.ForeignKeyConstraint(
            ["programme_id"],
            ["programme.id"],
            name=op.f("fk_programme_issuer_programme_id_programme"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_programme_issuer")),
        sa.UniqueConstraint(
            "programme_id", "organisation_id", name="uq_programme_issuer_programme_id"
        ),
    )
    op.create_index(
        op.f("ix_programme_issuer_organisation_id"),
        "programme_issuer",
        ["organisation_id"],
        unique=False,
    )
    op.create_table(
        "booklet_order",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("programme_id", sa.BigInteger(), nullable=False),
        sa.Column("issuer_id", sa.BigInteger(), nullable=False),
        sa.Column("booklets", sa.Integer(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.BigInteger(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("booklets > 0", name=op.f("ck_booklet_order_booklets")),
        sa.CheckConstraint("size > 0", name=op.f("ck_booklet_order_size")),
        sa.ForeignKeyConstraint(
            ["created_by"], ["app_user.id"], name=op.f("fk_booklet_order_created_by_app_user")
        ),
        sa.ForeignKeyConstraint(
            ["issuer_id"],
            ["organisation.id"],
            name=op.f("fk_booklet_order_issuer_id_organisation"),
        ),
        sa.ForeignKeyConstraint(
            ["programme_id"],
            ["programme.id"],
            name=op.f("fk_booklet_order_programme_id_programme"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_booklet_order")),
    )
    op.create_index(
        op.f("ix_booklet_order_issuer_id"), "booklet_order", ["issuer_id"], unique=False
    )
    op.create_index(
        op.f("ix_booklet_order_programme_id"), "booklet_order", ["programme_id"], unique=False
    )
    op.create_table(
        "booklet",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("number", sa.String(length=20), nullable=False),
        sa.Column("programme_id", sa.BigInteger(), nullable=False),
        sa.Column("issuer_id", sa.BigInteger(), nullable=False),
        sa.Column("beneficiary_id", sa.BigInteger(), nullable=True),
        sa.Column("order_id", sa.BigInteger(), nullable=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_by", sa.BigInteger(), nullable=True),
        sa.Column("handed_out_by", sa.BigInteger(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("handed_out_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancel_reason", sa.String(length=300), nullable=True),
        sa.CheckConstraint(
            "status <> 'active' OR beneficiary_id IS NOT NULL",
            name=op.f("ck_booklet_active_has_beneficiary"),
        ),
        sa.CheckConstraint(
            "status IN ('in_stock', 'active', 'cancelled')", name=op.f("ck_booklet_status")
        ),
        sa.CheckConstraint("size > 0", name=op.f("ck_booklet_size")),
        sa.ForeignKeyConstraint(
            ["beneficiary_id"],
            ["beneficiary.id"],
            name=op.f("fk_booklet_beneficiary_id_beneficiary"),
        ),
        sa.ForeignKeyConstraint(
            ["created_by"], ["app_user.id"], name=op.f("fk_booklet_created_by_app_user")
        ),
        sa.ForeignKeyConstraint(
            ["handed_out_by"], ["app_user.id"], name=op.f("fk_booklet_handed_out_by_app_user")
        ),
        sa.ForeignKeyConstraint(
            ["issuer_id"], ["organisation.id"], name=op.f("fk_booklet_issuer_id_organisation")
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["booklet_order.id"], name=op.f("fk_booklet_order_id_booklet_order")
        ),
        sa.ForeignKeyConstraint(
            ["programme_id"], ["programme.id"], name=op.f("fk_booklet_programme_id_programme")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_booklet")),
        sa.UniqueConstraint("number", name=op.f("uq_booklet_number")),
    )
    op.create_index(op.f("ix_booklet_beneficiary_id"), "booklet", ["beneficiary_id"], unique=False)
    op.create_index(
        "ix_booklet_issuer_created", "booklet", ["issuer_id", "created_at"], unique=False
    )
    op.create_index(op.f("ix_booklet_order_id"), "booklet", ["order_id"], unique=False)
    op.create_index(op.f("ix_booklet_programme_id"), "booklet", ["programme_id"], unique=False)
    op.create_table(
        "cheque",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("serial", sa.String(length=24), nullable=False),
        sa.Column("token", sa.String(length=200), nullable=False),
        sa.Column("booklet_id", sa.BigInteger(), nullable=False),
        sa.Column("programme_id", sa.BigInteger(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("value_cents", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=False),
        sa.Column("redeem_until", sa.Date(), nullable=False),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status_changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('in_stock', 'active', 'redeemed', 'expired', 'cancelled')",
            name=op.f("ck_cheque_status"),
        ),
        sa.CheckConstraint("value_cents > 0", name=op.f("ck_cheque_value_positive")),
        sa.ForeignKeyConstraint(
            ["booklet_id"], ["booklet.id"], name=op.f("fk_cheque_booklet_id_booklet")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cheque")),
        sa.UniqueConstraint("booklet_id", "position", name="uq_cheque_booklet_id"),
        sa.UniqueConstraint("serial", name=op.f("uq_cheque_serial")),
    )
    op.create_index(
        "ix_cheque_active_redeem_until",
        "cheque",
        ["redeem_until"],
        unique=False,
        postgresql_where=sa.text("status = 'active'"),
    )
    op.create_index(op.f("ix_cheque_programme_id"), "cheque", ["programme_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_cheque_programme_id"), table_name="cheque")
    op.drop_index(
        "ix_cheque_active_redeem_until",
        table_name="cheque",
        postgresql_where=sa.text("status = 'active'"),
    )
    op.drop_table("cheque")
    op.drop_index(op.f("ix_booklet_programme_id"), table_name="booklet")
    op.drop_index(op.f("ix_booklet_order_id"), table_name="booklet")
    op.drop_index("ix_booklet_issuer_created", table_name="booklet")
    op.drop_index(op.f("ix_booklet_beneficiary_id"), table_name="booklet")
    op.drop_table("booklet")
    op.drop_index(op.f("ix_booklet_order_programme_id"), table_name="booklet_order")
    op.drop_index(op.f("ix_booklet_order_issuer_id"), table_name="booklet_order")
    op.drop_table("booklet_order")
    op.drop_index(op.f("ix_programme_issuer_organisation_id"), table_name="programme_issuer")
    op.drop_table("programme_issuer")
    op.drop_index(
        "uq_programme_financer_one_state",
        table_name="programme_financer",
        postgresql_where=sa.text("role = 'state'"),
    )
    op.drop_index(op.f("ix_programme_financer_organisation_id"), table_name="programme_financer")
    op.drop_table("programme_financer")
    op.drop_index(
        "uq_beneficiary_issuer_reference",
        table_name="beneficiary",
        postgresql_where=sa.text("reference IS NOT NULL"),
    )
    op.drop_table("beneficiary")
    op.drop_table("programme")
