"""`passnum order` writes a print-ready PDF of booklets put in stock; `passnum pseudonymise`
clears old beneficiaries' references with the configured retention period."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from typer.testing import CliRunner

from kit.clock import utcnow
from kit.settings import get_settings
from pass_.enums import OrganisationKind
from pass_.models import Beneficiary, Booklet, Cheque
from tests.factories import make_org
from tests.pass_.factories import make_beneficiary, make_programme


@pytest.fixture
def cli_env(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[CliRunner]:
    """The CLI on the test database (settings come from the environment, read once)."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("PASSNUM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PASSNUM_BENEFICIARY_RETENTION_DAYS", "30")
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


async def committed(sessionmaker: async_sessionmaker[AsyncSession], work: Any) -> Any:
    async with sessionmaker() as session:
        result = await work(session)
        await session.commit()
        return result


async def test_passnum_order_puts_booklets_in_stock_and_writes_their_pdf(
    cli_env: CliRunner, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    from api.cli import app

    funded = await committed(sessionmaker, lambda s: make_programme(s))
    out = tmp_path / "commande.pdf"
    result = await _invoke(
        cli_env,
        app,
        [
            "order",
            "--programme", str(funded.id),
            "--issuer", str(funded.issuers[0].id),
            "--booklets", "2",
            "--size", "5",
            "--out", str(out),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "2 carnet(s), 10 chèques en stock" in result.output
    assert out.read_bytes().startswith(b"%PDF")
    async with sessionmaker() as session:
        statuses = (
            await session.execute(
                select(Cheque.status, func.count())
                .join(Booklet, Booklet.id == Cheque.booklet_id)
                .where(Booklet.programme_id == funded.id)
                .group_by(Cheque.status)
            )
        ).all()
    assert statuses == [("in_stock", 10)]

    refused = await _invoke(
        cli_env,
        app,
        ["order", "--programme", str(funded.id), "--issuer", str(funded.issuers[0].id),
         "--booklets", "1", "--size", "7", "--out", str(tmp_path / "non.pdf")],
    )  # fmt: skip
    assert refused.exit_code == 1
    assert "Erreur : Ce programme prévoit des carnets de 5 ou 10 chèques." in refused.output
    assert not (tmp_path / "non.pdf").exists()


async def test_passnum_pseudonymise_uses_the_configured_retention(
    cli_env: CliRunner, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    from api.cli import app

    async def people(session: AsyncSession) -> tuple[int, int]:
        issuer = await make_org(session, OrganisationKind.issuer)
        old = await make_beneficiary(session, issuer, reference="VIEUX")
        new = await make_beneficiary(session, issuer, reference="RECENT")
        await session.execute(
            update(Beneficiary)
            .where(Beneficiary.id == old.id)
            .values(last_booklet_at=utcnow() - timedelta(days=31))
        )
        return old.id, new.id  # type: ignore[return-value]

    old_id, new_id = await committed(sessionmaker, people)
    result = await _invoke(cli_env, app, ["pseudonymise"])
    assert result.exit_code == 0, result.output
    assert "conservation : 30 jours" in result.output
    async with sessionmaker() as session:
        references = dict(
            (
                await session.execute(
                    select(Beneficiary.id, Beneficiary.reference).where(
                        Beneficiary.id.in_([old_id, new_id])  # type: ignore[union-attr]
                    )
                )
            ).all()
        )
    assert references == {old_id: None, new_id: "RECENT"}


async def _invoke(runner: CliRunner, app: Any, args: list[str]) -> Any:
    """Run a command in a thread: the CLI starts its own event loop, as in a terminal."""
    import asyncio

    return await asyncio.to_thread(runner.invoke, app, args)
