"""seals in a table of their own: entries become immutable

Revision ID: 0007_ledger_seal
Revises: 0006_idempotency_purge

Until now the sealer UPDATEd each entry to fill its seal columns (sealed_seq, hash, prev_hash),
under a trigger that allowed that one change. Each such update wrote a whole new version of the
entry and new keys in every index of ledger_entry (sealed_seq is indexed, and the partial index
of unsealed entries tests it, so the update could never be HOT), and the guard compared both
versions as jsonb: about a third of the database's work per redemption, measured, and the
largest cause of the redemption latency tail. Now:
- a seal is a row of `ledger_seal` (entry_id, sealed_seq, hash, prev_hash), INSERTed once;
  `ledger_seal` is append-only like the rest of the journal;
- `ledger_entry` refuses every UPDATE, as `ledger_posting` always has;
- the sealer finds what is left to seal by the transaction that wrote each entry: the new
  column `xact` (the writer's top-level transaction id, filled by its default) and the
  snapshot that the previous run read under, kept on that run's last seal (`open_from`,
  `open_xids`): an entry it could not see was written by a transaction in progress then or
  started later (see ledger.sealer). The partial index of unsealed entries goes.

Existing seals are copied as they are. Existing entries get `xact` 0, and the seals copied
carry no snapshot: the first run after this upgrade looks at every entry once. The upgrade
takes ledger_entry's lock for the length of the index build (one bigint per entry).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_ledger_seal"
down_revision: str | None = "0006_idempotency_purge"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SHA256_HEX = "^[0-9a-f]{64}$"
XACT_DEFAULT = "CAST(CAST(pg_current_xact_id() AS text) AS bigint)"

GUARD_UPDATE = """
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
$$"""


def upgrade() -> None:
    op.create_table(
        "ledger_seal",
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.Column("sealed_seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.Text(), nullable=False),
        sa.Column("open_from", sa.BigInteger(), nullable=True),
        sa.Column("open_xids", sa.ARRAY(sa.BigInteger()), nullable=True),
        sa.CheckConstraint("sealed_seq >= 1", name=op.f("ck_ledger_seal_seq_positive")),
        sa.CheckConstraint(f"hash ~ '{SHA256_HEX}' AND prev_hash ~ '{SHA256_HEX}'",
                           name=op.f("ck_ledger_seal_hash_format")),
        sa.CheckConstraint("(open_from IS NULL) = (open_xids IS NULL)",
                           name=op.f("ck_ledger_seal_snapshot_complete")),
        sa.ForeignKeyConstraint(["entry_id"], ["ledger_entry.id"],
                                name=op.f("fk_ledger_seal_entry_id_ledger_entry")),
        sa.PrimaryKeyConstraint("entry_id", name=op.f("pk_ledger_seal")),
        sa.UniqueConstraint("sealed_seq", name=op.f("uq_ledger_seal_sealed_seq")),
    )
    op.execute("""INSERT INTO ledger_seal (entry_id, sealed_seq, hash, prev_hash)
                  SELECT id, sealed_seq, hash, prev_hash FROM ledger_entry
                  WHERE sealed_seq IS NOT NULL ORDER BY sealed_seq""")
    op.execute("""CREATE TRIGGER ledger_seal_refuse_change BEFORE UPDATE OR DELETE ON ledger_seal
                  FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()""")
    op.execute("""CREATE TRIGGER ledger_seal_refuse_truncate BEFORE TRUNCATE ON ledger_seal
                  FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()""")

    op.execute("DROP TRIGGER ledger_entry_guard_update ON ledger_entry")
    op.execute("DROP FUNCTION ledger_entry_guard_update()")
    op.execute("DROP TRIGGER ledger_entry_refuse_delete ON ledger_entry")
    op.execute("""CREATE TRIGGER ledger_entry_refuse_change BEFORE UPDATE OR DELETE ON ledger_entry
                  FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()""")

    op.drop_index("ix_ledger_entry_unsealed", table_name="ledger_entry",
                  postgresql_where=sa.text("sealed_seq IS NULL"))
    op.drop_constraint(op.f("ck_ledger_entry_seal_complete"), "ledger_entry", type_="check")
    op.drop_constraint(op.f("uq_ledger_entry_sealed_seq"), "ledger_entry", type_="unique")
    for column in ("sealed_seq", "hash", "prev_hash"):
        op.drop_column("ledger_entry", column)
    # A constant default first (no rewrite: existing entries read 0), then the real one.
    op.add_column("ledger_entry", sa.Column("xact", sa.BigInteger(), nullable=False,
                                            server_default="0"))
    op.alter_column("ledger_entry", "xact", server_default=sa.text(XACT_DEFAULT))
    op.create_index(op.f("ix_ledger_entry_xact"), "ledger_entry", ["xact"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_ledger_entry_xact"), table_name="ledger_entry")
    op.drop_column("ledger_entry", "xact")
    op.add_column("ledger_entry", sa.Column("sealed_seq", sa.BigInteger(), nullable=True))
    op.add_column("ledger_entry", sa.Column("hash", sa.Text(), nullable=True))
    op.add_column("ledger_entry", sa.Column("prev_hash", sa.Text(), nullable=True))
    op.execute("DROP TRIGGER ledger_entry_refuse_change ON ledger_entry")
    op.execute("""UPDATE ledger_entry AS e
                  SET sealed_seq = s.sealed_seq, hash = s.hash, prev_hash = s.prev_hash
                  FROM ledger_seal AS s WHERE s.entry_id = e.id""")
    op.execute("""CREATE TRIGGER ledger_entry_refuse_delete BEFORE DELETE ON ledger_entry
                  FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()""")
    op.execute(GUARD_UPDATE)
    op.execute("""CREATE TRIGGER ledger_entry_guard_update BEFORE UPDATE ON ledger_entry
                  FOR EACH ROW EXECUTE FUNCTION ledger_entry_guard_update()""")
    op.create_unique_constraint(op.f("uq_ledger_entry_sealed_seq"), "ledger_entry",
                                ["sealed_seq"])
    op.create_check_constraint(
        op.f("ck_ledger_entry_seal_complete"), "ledger_entry",
        "(sealed_seq IS NULL AND hash IS NULL AND prev_hash IS NULL) OR "
        f"(sealed_seq >= 1 AND hash ~ '{SHA256_HEX}' AND prev_hash ~ '{SHA256_HEX}')",
    )
    op.create_index("ix_ledger_entry_unsealed", "ledger_entry", ["id"], unique=False,
                    postgresql_where=sa.text("sealed_seq IS NULL"))
    # Dropping the table drops its triggers.
    op.drop_table("ledger_seal")
