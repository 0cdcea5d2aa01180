"""The audit rebuilds statements from the redemptions and the journal, replaying the allocation
rule, and reports what was changed behind the service's back. Tampering runs inside the test's
rolled-back transaction."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import text

from clearing.audit import audit_clearing, run_audit
from clearing.batches import close_batch
from clearing.expiry import close_programme
from clearing.payments import record_transfer
from kit.clock import utcnow
from ledger.audit import Difference
from pass_.enums import DemarcheFamily
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
    return Keyring.load_or_create(tmp_path_factory.mktemp("clearing-audit") / "keys")


@pytest.fixture
async def cleared(session, keyring):  # type: ignore[no-untyped-def]
    """A programme with two sites, five redemptions in one batch, one statement paid."""
    scheme = await make_scheme(session, keyring, site_commission_bp=200, financer_fee_bp=100)
    sites = [await make_site(session), await make_site(session, commune_insee="35047")]
    cheques = await issue_cheques(session, scheme, 6)
    redemptions = [
        await redeem(session, scheme, sites[i % 2], cheque, at=paris(2024, 1, 4 + i),
                     family=DemarcheFamily.caf if i % 2 else None)
        for i, cheque in enumerate(cheques[:5])]
    batch, _ = await close_batch(session, cutoff=unique_cutoff(), now=utcnow())
    statements = dict((await session.execute(text(
        "SELECT organisation_id, id FROM statement WHERE batch_id = :b"),
        {"b": batch.id})).all())
    return scheme, sites, redemptions, batch, statements


def _about(differences: list[Difference], kind: str, **details: object) -> list[Difference]:
    return [d for d in differences
            if d.kind == kind and all(d.details.get(k) == v for k, v in details.items())]


async def test_a_consistent_history_passes_the_audit(session, cleared):
    scheme, sites, _redemptions, _batch, statements = cleared
    site_statement = statements[sites[0].id]
    net = await session.scalar(text("SELECT net_cents FROM statement WHERE id = :id"),
                               {"id": site_statement})
    await record_transfer(session, statement_id=site_statement, reference="VIR-2024-02-001",
                          amount_cents=net, received_on=date(2024, 2, 6), now=utcnow())
    await close_programme(session, programme_id=scheme.id, today=date(2025, 2, 8),
                          now=utcnow())

    assert await audit_clearing(session) == []
    result = await run_audit(session)
    assert not [d for d in result.differences
                if d.kind.startswith(("statement", "batch", "allocation", "account"))]


async def test_the_audit_sees_a_tampered_statement(session, cleared):
    _scheme, sites, _redemptions, _batch, statements = cleared
    tampered = statements[sites[1].id]
    await session.execute(text("""
        UPDATE statement SET gross_cents = gross_cents + 100, net_cents = net_cents + 100
        WHERE id = :id"""), {"id": tampered})

    found = await audit_clearing(session)

    [mismatch] = _about(found, "statement_mismatch", statement_id=tampered)
    assert set(mismatch.details["fields"]) == {"montant brut", "montant net"}
    assert _about(found, "statement_hash_mismatch", statement_id=tampered)
    result = await run_audit(session)
    assert not result.ok and mismatch in result.differences


async def test_the_audit_sees_a_tampered_redemption(session, cleared):
    _scheme, sites, redemptions, batch, statements = cleared
    victim = redemptions[2]  # at site 0
    await session.execute(text("UPDATE redemption SET value_cents = 5000 WHERE id = :id"),
                          {"id": victim.id})

    found = await audit_clearing(session)

    [allocation] = _about(found, "allocation_mismatch", batch_id=batch.id)
    assert victim.id in allocation.details["redemption_ids"]
    [totals] = _about(found, "batch_totals", batch_id=batch.id)
    assert totals.details["redemptions"] == totals.details["sites"] + 4000
    [site] = _about(found, "statement_mismatch", statement_id=statements[sites[0].id])
    assert site.details["fields"]["montant brut"] == {"stored": 3000, "recomputed": 7000}
    # The whole audit also finds the redemption's own ledger entry no longer matching it.
    result = await run_audit(session)
    assert [d for d in result.differences if d.kind == "redemption_entry_missing"
            and d.details["key"] == f"redeem:{victim.id}"]


async def test_the_audit_sees_a_redemption_moved_to_another_family(session, cleared):
    _scheme, _sites, redemptions, batch, _statements = cleared
    await session.execute(text("UPDATE redemption SET demarche_family = 'impots' WHERE id = :id"),
                          {"id": redemptions[1].id})  # was caf

    found = await audit_clearing(session)

    # Without operators the family does not change who pays: the sums and the allocation
    # still agree…
    assert not _about(found, "batch_totals", batch_id=batch.id)
    assert not _about(found, "allocation_mismatch", batch_id=batch.id)
    # …but the financer statements' lines (by family) no longer match the replay.
    assert [d for d in found if d.kind == "statement_mismatch"
            and "lignes" in d.details["fields"]]


async def test_the_audit_sees_a_paid_status_without_its_journal_entry(session, cleared):
    scheme, _sites, _redemptions, _batch, statements = cleared
    financer_statement = statements[scheme.financer_id(1)]
    await session.execute(text("""
        UPDATE statement SET status = 'paid', paid_cents = net_cents, payment_reference = 'x'
        WHERE id = :id"""), {"id": financer_statement})

    found = await audit_clearing(session)

    assert _about(found, "statement_entry_missing", statement_id=financer_statement)
    receivable = f"financer:{scheme.financer_id(1)}:receivable"
    assert [d for d in found if d.kind == "account_balance_mismatch" and d.account == receivable]


async def test_the_audit_sees_a_cheque_expired_without_its_ledger_entry(session, cleared):
    scheme, *_ = cleared
    active = scheme.cheques[5]
    await session.execute(text("UPDATE cheque SET status = 'expired' WHERE id = :id"),
                          {"id": active.id})

    result = await run_audit(session)

    assert [d for d in result.differences if d.kind == "programme_outstanding"
            and d.account == f"programme:{scheme.id}:outstanding"]
