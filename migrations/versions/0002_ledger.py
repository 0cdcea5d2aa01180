"""ledger journal

Revision ID: 0002_ledger
Revises: 0001_accounts

The three ledger tables, and the triggers that make the database itself guarantee the journal:
- every entry has at least two postings summing to zero, checked at commit (deferred constraint
  triggers, so an entry and its postings can be written by separate statements);
- nothing is ever updated, deleted or truncated, except the sealer setting an entry's seal
  columns (sealed_seq, hash, prev_hash) once, from NULL, with every other column unchanged.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002_ledger"
down_revision: str | None = "0001_accounts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SHA256_HEX = "^[0-9a-f]{64}$"

# One command per string: asyncpg prepares each statement on its own.
FUNCTIONS = [
    """
CREATE FUNCTION ledger_check_entry_balanced() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    entry bigint;
    n bigint;
    total numeric;
BEGIN
    IF TG_TABLE_NAME = 'ledger_entry' THEN
        entry := NEW.id;
    ELSE
        entry := NEW.entry_id;
    END IF;
    SELECT count(*), coalesce(sum(amount_cents), 0) INTO n, total
      FROM ledger_posting WHERE entry_id = entry;
    IF n < 2 OR total <> 0 THEN
        RAISE EXCEPTION 'ledger entry % is not balanced: % posting(s) summing to %',
                        entry, n, total
              USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_entry_balanced';
    END IF;
    RETURN NULL;
END
$$""",
    """
CREATE FUNCTION ledger_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% on % is refused: the ledger is append-only', TG_OP, TG_TABLE_NAME
          USING ERRCODE = 'restrict_violation';
END
$$""",
    """
-- The one UPDATE allowed on an entry: the sealer filling the seal columns, once. Comparing
-- the rows as jsonb minus the seal columns keeps this right if columns are added later.
CREATE FUNCTION ledger_entry_guard_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.sealed_seq IS NULL AND OLD.hash IS NULL AND OLD.prev_hash IS NULL
       AND NEW.sealed_seq IS NOT NULL AND NEW.hash IS NOT NULL AND NEW.prev_hash IS NOT NULL
       AND (to_jsonb(NEW) - 'sealed_seq' - 'hash' - 'prev_hash')
           = (to_jsonb(OLD) - 'sealed_seq' - 'hash' - 'prev_hash')
    THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'UPDATE on ledger_entry % is refused: only sealing an unsealed entry is allowed',
                    OLD.id
          USING ERRCODE = 'restrict_violation';
END
$$""",
]

TRIGGERS = [
    """CREATE CONSTRAINT TRIGGER ledger_posting_balanced
        AFTER INSERT ON ledger_posting DEFERRABLE INITIALLY DEFERRED
        FOR EACH ROW EXECUTE FUNCTION ledger_check_entry_balanced()""",
    # An entry without any posting fires no posting trigger: check it from the entry side too.
    """CREATE CONSTRAINT TRIGGER ledger_entry_balanced
        AFTER INSERT ON ledger_entry DEFERRABLE INITIALLY DEFERRED
        FOR EACH ROW EXECUTE FUNCTION ledger_check_entry_balanced()""",
    """CREATE TRIGGER ledger_entry_guard_update BEFORE UPDATE ON ledger_entry
        FOR EACH ROW EXECUTE FUNCTION ledger_entry_guard_update()""",
    """CREATE TRIGGER ledger_entry_refuse_delete BEFORE DELETE ON ledger_entry
        FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()""",
    """CREATE TRIGGER ledger_entry_refuse_truncate BEFORE TRUNCATE ON ledger_entry
        FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()""",
    """CREATE TRIGGER ledger_posting_refuse_change BEFORE UPDATE OR DELETE ON ledger_posting
        FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()""",
    """CREATE TRIGGER ledger_posting_refuse_truncate BEFORE TRUNCATE ON ledger_posting
        FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()""",
    # Accounts are never deleted nor renamed: postings (and id caches) refer to them for ever.
    """CREATE TRIGGER ledger_account_refuse_change BEFORE UPDATE OR DELETE ON ledger_account
        FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()""",
    """CREATE TRIGGER ledger_account_refuse_truncate BEFORE TRUNCATE ON ledger_account
        FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()""",
]


def upgrade() -> None:
    op.create_table(
        "ledger_account",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("code", sa.Text(collation="C"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.CheckConstraint("code ~ '^[!-~]{1,200}$'", name=op.f("ck_ledger_account_code_format")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_account")),
        sa.UniqueConstraint("code", name=op.f("uq_ledger_account_code")),
    )
    op.create_table(
        "ledger_entry",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("idempotency_key", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("memo", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.Column("content_hash", sa.Text(), nullable=False),
        sa.Column("sealed_seq", sa.BigInteger(), nullable=True),
        sa.Column("hash", sa.Text(), nullable=True),
        sa.Column("prev_hash", sa.Text(), nullable=True),
        sa.CheckConstraint("length(idempotency_key) BETWEEN 1 AND 200",
                           name=op.f("ck_ledger_entry_idempotency_key_length")),
        sa.CheckConstraint("length(kind) BETWEEN 1 AND 64",
                           name=op.f("ck_ledger_entry_kind_length")),
        sa.CheckConstraint(f"content_hash ~ '{SHA256_HEX}'",
                           name=op.f("ck_ledger_entry_content_hash_format")),
        sa.CheckConstraint(
            "(sealed_seq IS NULL AND hash IS NULL AND prev_hash IS NULL) OR "
            f"(sealed_seq >= 1 AND hash ~ '{SHA256_HEX}' AND prev_hash ~ '{SHA256_HEX}')",
            name=op.f("ck_ledger_entry_seal_complete"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_entry")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_ledger_entry_idempotency_key")),
        sa.UniqueConstraint("sealed_seq", name=op.f("uq_ledger_entry_sealed_seq")),
    )
    op.create_index("ix_ledger_entry_unsealed", "ledger_entry", ["id"], unique=False,
                    postgresql_where=sa.text("sealed_seq IS NULL"))
    op.create_table(
        "ledger_posting",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("amount_cents <> 0", name=op.f("ck_ledger_posting_amount_nonzero")),
        sa.ForeignKeyConstraint(["account_id"], ["ledger_account.id"],
                                name=op.f("fk_ledger_posting_account_id_ledger_account")),
        sa.ForeignKeyConstraint(["entry_id"], ["ledger_entry.id"],
                                name=op.f("fk_ledger_posting_entry_id_ledger_entry")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_posting")),
    )
    op.create_index("ix_ledger_posting_account_id", "ledger_posting", ["account_id"],
                    unique=False, postgresql_include=["amount_cents"])
    op.create_index(op.f("ix_ledger_posting_entry_id"), "ledger_posting", ["entry_id"],
                    unique=False)
    for statement in FUNCTIONS + TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    # Dropping a table drops its triggers (TRUNCATE triggers do not fire on DROP).
    op.drop_index(op.f("ix_ledger_posting_entry_id"), table_name="ledger_posting")
    op.drop_index("ix_ledger_posting_account_id", table_name="ledger_posting")
    op.drop_table("ledger_posting")
    op.drop_index("ix_ledger_entry_unsealed", table_name="ledger_entry",
                  postgresql_where=sa.text("sealed_seq IS NULL"))
    op.drop_table("ledger_entry")
    op.drop_table("ledger_account")
    op.execute("DROP FUNCTION ledger_entry_guard_update()")
    op.execute("DROP FUNCTION ledger_refuse_change()")
    op.execute("DROP FUNCTION ledger_check_entry_balanced()")
