"""The audit rebuilds statements from the redemptions and the journal, replaying the allocation
rule, and reports what was changed behind the service's back. Tampering runs inside the test's
rolled-back transaction."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import text

from clearing.audit import (
    _STORED_LINES,
    _line_digests,
    audit_clearing,
    run_audit,
)
from clearing.audit_replay import _financer_statements, _Tally
from clearing.batches import (
    OrderedLinesDigest,
    ProgrammeTerms,
    close_batch,
    financer_lines_digest,
)
from clearing.expiry import close_programme
from clearing.payments import record_transfer
from kit.clock import utcnow
from kit.db import raw_connection
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


async def test_the_stored_lines_come_in_the_digest_order_from_the_database(session, cleared):
    """The audit hashes each statement's stored lines as the database orders them, which is
    `financer_lines_digest`'s order (Python compares strings by code point) whatever the
    database's collation says of capitals, accents or digits; where it were not, the
    statement's lines are sorted again (same digest, more work)."""
    scheme, *_rest, batch, statements = cleared
    statement_id = statements[scheme.financer_id(1)]
    for family, commune in [("b", "2A004"), ("B", "20004"), ("é", "35238"), ("e", None),
                            (None, "2B001"), ("Z", "35047")]:
        await session.execute(text("""
            INSERT INTO statement_line (statement_id, programme_id, demarche_family,
                                        commune_insee, cheque_count, amount_cents)
            VALUES (:s, :p, :f, :c, 1, 100)"""),
            {"s": statement_id, "p": scheme.id, "f": family, "c": commune})
    raw = await raw_connection(session)
    digest = OrderedLinesDigest()
    for sid, *line in await raw.fetch(_STORED_LINES, batch.id - 1):
        if sid == statement_id:
            digest.add(line)
    lines = [tuple(r) for r in await raw.fetch(
        "SELECT programme_id, demarche_family, commune_insee, cheque_count, amount_cents "
        "FROM statement_line WHERE statement_id = $1", statement_id)]
    assert digest.ordered and digest.count == len(lines) >= 7
    assert (await _line_digests(raw, batch.id - 1))[statement_id] == (
        financer_lines_digest(lines), len(lines))


def test_a_replayed_financer_statement_hashes_its_lines_as_the_statement_does() -> None:
    """The replay hashes a financer's lines from their packed keys in the digest's order; with
    no family and an empty one both present (they print alike), from the unpacked lines."""
    terms = {7: ProgrammeTerms(id=7, site_commission_bp=0, financer_fee_bp=100,
                               state_share_bp=0, financers=(), commitments={})}
    for names in (["caf", None, "35238", "2A004", "35047"], ["caf", None, "", "35238"]):
        numbered = {name: no for no, name in enumerate(names)}
        lines: dict[int, dict[int, int]] = {3: {}}
        expected = []
        # Lines come in another order than the names' numbers: among names that print
        # alike, the digest keeps the lines' order (a stable sort), not the numbers'.
        communes = [name for name in names if name and name[0].isdigit()]
        for i, (family, commune) in enumerate(
                (f, c) for f in reversed(names) for c in communes):
            key = ((7 << 32) | numbered[family]) << 32 | numbered[commune]
            lines[3][key] = (1 << 48) * (i + 1) + 100 * (i + 1)
            expected.append((7, family, commune, i + 1, 100 * (i + 1)))
        tally = _Tally({}, {}, lines, numbered, [])
        [statement] = _financer_statements(9, tally, terms)
        assert statement.lines_digest == financer_lines_digest(expected)
        assert statement.cheques == sum(n for *_, n, _c in expected)


async def test_the_audit_on_every_core_finds_what_the_audit_on_one_connection_finds(
        sessionmaker, keyring):
    """A large journal's full audit runs its parts at once on connections of their own at
    the session's snapshot, the statements' lines digested in a worker process. Those cannot
    see a transaction's own writes: the batch and its forgery (a statement line changed) are
    committed, the line put back at the end."""
    async with sessionmaker() as setup:
        scheme = await make_scheme(setup, keyring, site_commission_bp=200)
        site = await make_site(setup)
        for i, cheque in enumerate(await issue_cheques(setup, scheme, 3)):
            await redeem(setup, scheme, site, cheque, at=paris(2024, 1, 4 + i))
        batch, _ = await close_batch(setup, cutoff=unique_cutoff(), now=utcnow())
        statement_id, line_id = (await setup.execute(text("""
            SELECT s.id, min(l.id) FROM statement s JOIN statement_line l
              ON l.statement_id = s.id
            WHERE s.batch_id = :b AND s.organisation_id = :f GROUP BY s.id"""),
            {"b": batch.id, "f": scheme.financer_id(1)})).one()
        await setup.execute(text(
            "UPDATE statement_line SET amount_cents = amount_cents + 1 WHERE id = :id"),
            {"id": line_id})
        await setup.commit()
    try:
        async with sessionmaker() as s:
            on_one_connection = await run_audit(s, parallel_from=2**62)
            await s.rollback()
        async with sessionmaker() as s:
            on_every_core = await run_audit(s, parallel_from=0)
            await s.rollback()
    finally:
        async with sessionmaker() as s:
            await s.execute(text(
                "UPDATE statement_line SET amount_cents = amount_cents - 1 WHERE id = :id"),
                {"id": line_id})
            await s.commit()
    assert on_every_core.differences == on_one_connection.differences
    assert _about(on_every_core.differences, "statement_mismatch", statement_id=statement_id)
