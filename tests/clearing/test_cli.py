"""`passnum close-batch`, `sepa`, `record-transfer` and `expire` on the test database."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from clearing.sepa import validate_pain001
from kit.clock import paris_today
from kit.settings import get_settings
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
    return Keyring.load_or_create(tmp_path_factory.mktemp("clearing-cli") / "keys")


@pytest.fixture
def runner(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
           ) -> Iterator[CliRunner]:
    """The CLI on the test database (settings come from the environment, read once)."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("PASSNUM_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


async def _passnum(runner: CliRunner, *args: str) -> Any:
    """Run a command in a thread: the CLI starts its own event loop, as in a terminal."""
    from api.cli import app

    return await asyncio.to_thread(runner.invoke, app, list(args))


async def test_a_batch_is_closed_paid_by_sepa_and_a_transfer_recorded_from_the_command_line(
        runner, sessionmaker, keyring, tmp_path):
    async with sessionmaker() as session:
        scheme = await make_scheme(session, keyring)
        site = await make_site(session, name="Espace public numérique")
        for i, cheque in enumerate(await issue_cheques(session, scheme, 3)):
            await redeem(session, scheme, site, cheque, at=paris(2024, 1, 16, 9, i))
        await session.commit()
    cutoff = unique_cutoff()

    closed = await _passnum(runner, "close-batch", "--cutoff", cutoff.isoformat())
    again = await _passnum(runner, "close-batch", "--cutoff", cutoff.isoformat())

    assert closed.exit_code == 0, closed.output
    assert "Lot arrêté" in closed.output and "déjà arrêté" in again.output
    async with sessionmaker() as session:
        batch_id, statement_id = (await session.execute(text("""
            SELECT s.batch_id, s.id FROM statement s JOIN batch b ON b.id = s.batch_id
            WHERE s.organisation_id = :site AND b.cutoff = :cutoff"""),
            {"site": site.id, "cutoff": cutoff})).one()

    out = tmp_path / "lot.xml"
    sepa = await _passnum(runner, "sepa", "--batch", str(batch_id), "--out", str(out))
    assert sepa.exit_code == 0, sepa.output
    validate_pain001(out.read_bytes())
    assert f"<EndToEndId>{statement_id}</EndToEndId>" in out.read_text()

    paid = await _passnum(runner, "record-transfer", "--statement", str(statement_id),
                          "--reference", "VIR-LOT-1", "--received-on", "2024-02-08")
    assert paid.exit_code == 0, paid.output
    refused = await _passnum(runner, "record-transfer", "--statement", str(statement_id),
                             "--reference", "VIR-AUTRE")
    assert refused.exit_code == 1 and "payment_already_recorded" in refused.output
    async with sessionmaker() as session:
        assert (await session.execute(text(
            "SELECT status, paid_cents, payment_reference FROM statement WHERE id = :id"),
            {"id": statement_id})).one() == ("paid", 3000, "VIR-LOT-1")


async def test_a_cutoff_in_the_future_fails_from_the_command_line(runner):
    next_year = (paris_today() + timedelta(days=400)).isoformat()
    result = await _passnum(runner, "close-batch", "--cutoff", next_year)
    assert result.exit_code == 1 and "cutoff_in_future" in result.output
    result = await _passnum(runner, "close-batch", "--cutoff", "2999-01-01")
    assert result.exit_code == 1 and "date_out_of_range" in result.output


async def test_expire_reports_what_it_expired(runner, sessionmaker, keyring):
    async with sessionmaker() as session:
        scheme = await make_scheme(session, keyring)
        await issue_cheques(session, scheme, 2)
        await session.commit()

    result = await _passnum(runner, "expire", "--confirmer")

    assert result.exit_code == 0, result.output
    assert "chèque(s) expiré(s)" in result.output
    async with sessionmaker() as session:
        assert await session.scalar(text(
            "SELECT count(*) FROM cheque WHERE programme_id = :p AND status = 'expired'"),
            {"p": scheme.id}) == 2
