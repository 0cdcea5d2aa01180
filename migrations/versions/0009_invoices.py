"""invoices (Factur-X, gapless yearly numbers), bank statements, buyer references

Revision ID: 0009_invoices
Revises: 0007_ledger_seal

Issue 14: `invoice` (380 per financer × programme × batch, 381 at programme end) numbered by
`invoice_counter` (one row a year, locked by the close that takes a number), `bank_statement`
and `bank_line` (camt.053/054 credits matched to invoices), and on `programme_financer` the
buyer's engagement number (BT-13), code service (BT-10), what its Chorus Pro structure requires
and its payment method.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0009_invoices'
down_revision: str | None = "0008_redeem_function"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('bank_statement',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('message_id', sa.String(length=64), nullable=True),
    sa.Column('filename', sa.String(length=200), nullable=True),
    sa.Column('line_count', sa.Integer(), nullable=False),
    sa.Column('imported_by', sa.BigInteger(), nullable=True),
    sa.Column('imported_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("kind IN ('camt.053', 'camt.054')", name=op.f('ck_bank_statement_kind')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bank_statement')),
    sa.UniqueConstraint('sha256', name=op.f('uq_bank_statement_sha256'))
    )
    op.create_table('invoice_counter',
    sa.Column('year', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('last_number', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('last_number >= 0', name=op.f('ck_invoice_counter_positive')),
    sa.PrimaryKeyConstraint('year', name=op.f('pk_invoice_counter'))
    )
    op.create_table('invoice',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('number', sa.String(length=20), nullable=False),
    sa.Column('year', sa.Integer(), nullable=False),
    sa.Column('sequence', sa.BigInteger(), nullable=False),
    sa.Column('type_code', sa.String(length=3), nullable=False),
    sa.Column('financer_id', sa.BigInteger(), nullable=False),
    sa.Column('programme_id', sa.BigInteger(), nullable=False),
    sa.Column('batch_id', sa.BigInteger(), nullable=True),
    sa.Column('statement_id', sa.BigInteger(), nullable=True),
    sa.Column('corrects', postgresql.ARRAY(sa.String(length=20)), server_default='{}', nullable=False),
    sa.Column('issue_date', sa.Date(), nullable=False),
    sa.Column('period_start', sa.Date(), nullable=True),
    sa.Column('period_end', sa.Date(), nullable=True),
    sa.Column('due_date', sa.Date(), nullable=True),
    sa.Column('basis_cents', sa.BigInteger(), nullable=False),
    sa.Column('vat_cents', sa.BigInteger(), nullable=False),
    sa.Column('total_cents', sa.BigInteger(), nullable=False),
    sa.Column('payment_reference', sa.String(length=35), nullable=False),
    sa.Column('payment_method', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('engagement_number', sa.String(length=50), nullable=True),
    sa.Column('service_code', sa.String(length=100), nullable=True),
    sa.Column('buyer', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('seller', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('lines', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('chorus_flow_id', sa.String(length=64), nullable=True),
    sa.Column('chorus_invoice_id', sa.String(length=64), nullable=True),
    sa.Column('chorus_status', sa.String(length=64), nullable=True),
    sa.Column('deposited_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('paid_cents', sa.BigInteger(), nullable=True),
    sa.Column('paid_on', sa.Date(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("(type_code = '380') = (batch_id IS NOT NULL)", name=op.f('ck_invoice_scope')),
    sa.CheckConstraint("payment_method IN ('transfer', 'stripe_sepa')", name=op.f('ck_invoice_payment_method')),
    sa.CheckConstraint("status <> 'paid' OR paid_on IS NOT NULL", name=op.f('ck_invoice_paid_on')),
    sa.CheckConstraint("status IN ('issued', 'deposited', 'in_payment', 'paid')", name=op.f('ck_invoice_status')),
    sa.CheckConstraint("type_code IN ('380', '381')", name=op.f('ck_invoice_type_code')),
    sa.CheckConstraint('basis_cents >= 0 AND vat_cents >= 0 AND total_cents = basis_cents + vat_cents', name=op.f('ck_invoice_totals')),
    sa.CheckConstraint('engagement_number IS NULL OR length(engagement_number) <= 50', name=op.f('ck_invoice_engagement_length')),
    sa.ForeignKeyConstraint(['batch_id'], ['batch.id'], name=op.f('fk_invoice_batch_id_batch')),
    sa.ForeignKeyConstraint(['financer_id'], ['organisation.id'], name=op.f('fk_invoice_financer_id_organisation')),
    sa.ForeignKeyConstraint(['programme_id'], ['programme.id'], name=op.f('fk_invoice_programme_id_programme')),
    sa.ForeignKeyConstraint(['statement_id'], ['statement.id'], name=op.f('fk_invoice_statement_id_statement')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_invoice')),
    sa.UniqueConstraint('number', name=op.f('uq_invoice_number')),
    sa.UniqueConstraint('payment_reference', name=op.f('uq_invoice_payment_reference')),
    sa.UniqueConstraint('year', 'sequence', name='uq_invoice_year_sequence')
    )
    op.create_index(op.f('ix_invoice_batch_id'), 'invoice', ['batch_id'], unique=False)
    op.create_index('ix_invoice_due', 'invoice', ['due_date'], unique=False, postgresql_where=sa.text("status <> 'paid'"))
    op.create_index(op.f('ix_invoice_financer_id'), 'invoice', ['financer_id'], unique=False)
    op.create_index(op.f('ix_invoice_statement_id'), 'invoice', ['statement_id'], unique=False)
    op.create_index('uq_invoice_batch_financer_programme', 'invoice', ['batch_id', 'financer_id', 'programme_id'], unique=True, postgresql_where=sa.text("type_code = '380'"))
    op.create_index('uq_invoice_credit_note', 'invoice', ['programme_id', 'financer_id'], unique=True, postgresql_where=sa.text("type_code = '381'"))
    op.create_table('bank_line',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('bank_statement_id', sa.BigInteger(), nullable=False),
    sa.Column('line_key', sa.String(length=200), nullable=False),
    sa.Column('booked_on', sa.Date(), nullable=False),
    sa.Column('amount_cents', sa.BigInteger(), nullable=False),
    sa.Column('payer_name', sa.String(length=140), nullable=True),
    sa.Column('payer_iban', sa.String(length=34), nullable=True),
    sa.Column('reference', sa.String(length=35), nullable=True),
    sa.Column('remittance', sa.String(length=500), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('invoice_id', sa.BigInteger(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("status IN ('matched', 'partial', 'over', 'suggested', 'unmatched', 'duplicate')", name=op.f('ck_bank_line_status')),
    sa.CheckConstraint('amount_cents > 0', name=op.f('ck_bank_line_amount_positive')),
    sa.ForeignKeyConstraint(['bank_statement_id'], ['bank_statement.id'], name=op.f('fk_bank_line_bank_statement_id_bank_statement')),
    sa.ForeignKeyConstraint(['invoice_id'], ['invoice.id'], name=op.f('fk_bank_line_invoice_id_invoice')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bank_line')),
    sa.UniqueConstraint('line_key', name=op.f('uq_bank_line_line_key'))
    )
    op.create_index(op.f('ix_bank_line_bank_statement_id'), 'bank_line', ['bank_statement_id'], unique=False)
    op.create_index(op.f('ix_bank_line_invoice_id'), 'bank_line', ['invoice_id'], unique=False)
    op.create_index('uq_bank_line_paid_invoice', 'bank_line', ['invoice_id'], unique=True, postgresql_where=sa.text("status = 'matched'"))
    op.add_column('programme_financer', sa.Column('engagement_number', sa.String(length=50), nullable=True))
    op.add_column('programme_financer', sa.Column('service_code', sa.String(length=100), nullable=True))
    op.add_column('programme_financer', sa.Column('requires_engagement', sa.Boolean(), server_default='false', nullable=False))
    op.add_column('programme_financer', sa.Column('requires_service_code', sa.Boolean(), server_default='false', nullable=False))
    op.add_column('programme_financer', sa.Column('payment_method', sa.String(length=16), nullable=True))
    op.create_check_constraint(
        op.f('ck_programme_financer_payment_method'), 'programme_financer',
        "payment_method IS NULL OR payment_method IN ('transfer', 'stripe_sepa')")


def downgrade() -> None:
    op.drop_constraint(op.f('ck_programme_financer_payment_method'), 'programme_financer',
                       type_='check')
    op.drop_column('programme_financer', 'payment_method')
    op.drop_column('programme_financer', 'requires_service_code')
    op.drop_column('programme_financer', 'requires_engagement')
    op.drop_column('programme_financer', 'service_code')
    op.drop_column('programme_financer', 'engagement_number')
    op.drop_index('uq_bank_line_paid_invoice', table_name='bank_line', postgresql_where=sa.text("status = 'matched'"))
    op.drop_index(op.f('ix_bank_line_invoice_id'), table_name='bank_line')
    op.drop_index(op.f('ix_bank_line_bank_statement_id'), table_name='bank_line')
    op.drop_table('bank_line')
    op.drop_index('uq_invoice_credit_note', table_name='invoice', postgresql_where=sa.text("type_code = '381'"))
    op.drop_index('uq_invoice_batch_financer_programme', table_name='invoice', postgresql_where=sa.text("type_code = '380'"))
    op.drop_index(op.f('ix_invoice_statement_id'), table_name='invoice')
    op.drop_index(op.f('ix_invoice_financer_id'), table_name='invoice')
    op.drop_index('ix_invoice_due', table_name='invoice', postgresql_where=sa.text("status <> 'paid'"))
    op.drop_index(op.f('ix_invoice_batch_id'), table_name='invoice')
    op.drop_table('invoice')
    op.drop_table('invoice_counter')
    op.drop_table('bank_statement')
