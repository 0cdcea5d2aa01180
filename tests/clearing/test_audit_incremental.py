"""The incremental audit starts from a checkpoint recorded by a conforming audit and checks only
what came after: new entries and seals from the checkpoint's chain hash, batches closed since
(replayed from the checkpoint's allocations), earlier batches' statements against the digest
the checkpoint recorded, and balances from the checkpoint's plus what was posted since.

The shared test database holds other tests' deliberately broken rows, so each test records its
own checkpoint (as a conforming audit would) and looks at the differences about its own rows."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from clearing.audit import (
    audit_clearing,
    balances_since,
    latest_checkpoint,
    record_checkpoint,
    run_incremental_audit,
)
from clearing.batches import close_batch
from kit.clock import utcnow
from ledger.audit import chain_head
from ledger.sealer import seal_pending
from pass_.tokens import Keyring
from tests.clearing.factories import (
    issue_cheques,
    make_scheme,
    make_site,
    paris,
    redeem,
    unique_cutoff,
)


@pytest.fixture(scope="module")
def keyring(tmp_path_factory: pytest.TempPathFactory) -> Keyring:
    return Keyring.load_or_create(tmp_path_factory.mktemp("audit-incremental") / "keys")


async def _seal(session) -> None:  # type: ignore[no-untyped-def]
    while await seal_pending(session, limit=100_000):
        pass


async def _checkpoint(session) -> None:  # type: ignore[no-untyped-def]
    """What `run_audit` records when everything conforms."""
    await _seal(session)
    head = await chain_head(session)
    digests: dict[int, str] = {}
    allocated: dict[int, dict[int, int]] = {}
    balances: dict[str, int] = {}
    await audit_clearing(session, digests=digests, allocated_out=allocated, balances=balances)
    for code, cents in (await balances_since(session, head)).items():
        balances[code] = balances.get(code, 0) - cents
    await record_checkpoint(session, "full", head, digests, allocated, balances)


@pytest.fixture
async def checkpointed(session, keyring):  # type: ignore[no-untyped-def]
    """One batch closed and a checkpoint after it; then redemptions of a second batch."""
    scheme = await make_scheme(session, keyring, site_commission_bp=200)
    site = await make_site(session)
    cheques = await issue_cheques(session, scheme, 6)
    for i, cheque in enumerate(cheques[:3]):
        await redeem(session, scheme, site, cheque, at=paris(2024, 1, 4 + i))
    first, _ = await close_batch(session, cutoff=unique_cutoff(), now=utcnow())
    await _checkpoint(session)
    for i, cheque in enumerate(cheques[3:5]):
        await redeem(session, scheme, site, cheque, at=paris(2024, 2, 4 + i))
    return scheme, site, first


def _mine(result, site_id: int, batch_ids: set[int]):  # type: ignore[no-untyped-def]
    return [d for d in result.differences
            if d.details.get("batch_id") in batch_ids
            or (d.account or "").startswith(f"site:{site_id}:")
            or d.kind in ("chain_broken", "checkpoint_seal_changed")]


async def test_what_came_after_the_checkpoint_is_audited_and_conforms(session, checkpointed):
    _scheme, site, first = checkpointed
    second, _ = await close_batch(session, cutoff=unique_cutoff(month=3), now=utcnow())
    await _seal(session)
    before = await latest_checkpoint(session)

    result = await run_incremental_audit(session)

    assert _mine(result, site.id, {first.id, second.id}) == []
    assert "depuis le point de contrôle" in result.summary
    if result.ok:  # (other tests' rows may hold differences of their own)
        after = await latest_checkpoint(session)
        assert after["sealed_seq"] > before["sealed_seq"] and after["last_batch_id"] == second.id


async def test_a_batch_closed_after_the_checkpoint_is_replayed(session, checkpointed):
    _scheme, site, _first = checkpointed
    second, _ = await close_batch(session, cutoff=unique_cutoff(month=3), now=utcnow())
    await _seal(session)
    statement_id = await session.scalar(text(
        "SELECT id FROM statement WHERE batch_id = :b AND organisation_id = :s"),
        {"b": second.id, "s": site.id})
    assert statement_id is not None  # the site's redemptions of February are in it
    await session.execute(text("""
        UPDATE statement SET gross_cents = gross_cents + 100, net_cents = net_cents + 100
        WHERE id = :id"""), {"id": statement_id})

    result = await run_incremental_audit(session)

    assert {d.kind for d in result.differences if d.details.get("statement_id") == statement_id
            } >= {"statement_mismatch", "statement_hash_mismatch"}


async def test_a_statement_of_a_batch_before_the_checkpoint_changed_is_seen(
        session, checkpointed):
    _scheme, site, first = checkpointed
    await session.execute(text("""
        UPDATE statement SET gross_cents = gross_cents + 100, net_cents = net_cents + 100
        WHERE batch_id = :b AND organisation_id = :s"""), {"b": first.id, "s": site.id})
    # Its fingerprint too, so that only the checkpoint's digest can tell.
    await session.execute(text("""
        UPDATE statement SET content_hash = repeat('0', 64)
        WHERE batch_id = :b AND organisation_id = :s"""), {"b": first.id, "s": site.id})

    result = await run_incremental_audit(session)

    assert [d.kind for d in result.differences if d.details.get("batch_id") == first.id] == [
        "batch_changed_since_checkpoint"]


async def test_a_new_entry_that_does_not_balance_its_seal_is_seen(session, checkpointed):
    await _seal(session)
    seq = (await latest_checkpoint(session))["sealed_seq"]
    # A seal after the checkpoint rewritten (as superuser, behind the service's back).
    await session.execute(text("SET LOCAL session_replication_role = replica"))
    await session.execute(text("ALTER TABLE ledger_seal DISABLE TRIGGER USER"))
    await session.execute(text("UPDATE ledger_seal SET hash = repeat('a', 64) "
                               "WHERE sealed_seq = :s"), {"s": seq + 1})
    await session.execute(text("ALTER TABLE ledger_seal ENABLE TRIGGER USER"))

    result = await run_incremental_audit(session)

    kinds = {d.kind for d in result.differences}
    assert "seal_hash_mismatch" in kinds and "chain_broken" in kinds
