"""How the anomaly watch is started (issue 16): `passnum watch` (cron), idempotent; and a
watch of the site scheduled by each offline batch, after the answer."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from typer.testing import CliRunner

from clearing.anomaly_models import Anomaly
from kit.clock import utcnow
from kit.settings import get_settings
from pass_ import redemption
from pass_.enums import OrganisationKind, Service
from pass_.tokens import Keyring
from tests.factories import make_org
from tests.pass_.redemption_factories import make_scene, make_site


@pytest.fixture
def cli(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("PASSNUM_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


async def test_passnum_watch_opens_an_alert_once(
    cli: CliRunner, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    from api.cli import app

    keyring = Keyring.load_or_create(tmp_path / "keys")
    async with sessionmaker() as session:
        scene = await make_scene(session, keyring, cheques=10)
        site = await make_org(session, OrganisationKind.site)
        for cheque in scene.cheques[:5]:  # a whole half-booklet in a minute
            await redemption.redeem_cheque(
                session,
                keyring=keyring,
                site_id=site.id,
                user_id=None,  # type: ignore[arg-type]
                code=cheque.serial,
                service=Service.naviguer_web,
                demarche_family=None,
                now=utcnow(),
            )
        await session.commit()

    first = await asyncio.to_thread(cli.invoke, app, ["watch"])
    assert first.exit_code == 0, first.output
    assert "booklet_burst" in first.output and "alerte(s) ouverte(s)" in first.output
    second = await asyncio.to_thread(cli.invoke, app, ["watch"])
    assert second.exit_code == 0, second.output
    assert second.output.startswith("0 alerte(s) ouverte(s)"), second.output
    async with sessionmaker() as session:
        found = (await session.scalars(select(Anomaly).where(Anomaly.site_id == site.id))).all()
    assert [a.rule for a in found] == ["booklet_burst"]


async def test_an_offline_batch_schedules_a_watch_of_its_site(
    session: AsyncSession, client: Any, app: Any
) -> None:
    from api.anomaly_watch import side_jobs

    scene = await make_scene(session, app.state.keyring, cheques=10)
    site = await make_site(session, app)
    await session.commit()
    jobs = side_jobs(app)
    items = [
        {
            "code": c.token,
            "service": "naviguer_web",
            "scanned_at": utcnow().isoformat(),
            "idempotency_key": str(uuid.uuid4()),
        }
        for c in scene.cheques[:3]
    ]
    answer = await client.post(
        "/api/v1/redemptions/batch", json={"items": items}, headers=site.headers
    )
    assert answer.status_code == 200, answer.text
    try:
        assert site.org.id in jobs.sites  # the watch runs a moment later, off the request
        assert jobs._watcher is not None and not jobs._watcher.done()
    finally:
        if jobs._watcher is not None:
            jobs._watcher.cancel()
        jobs.sites.clear()


async def test_watch_runs_of_a_worker_are_spaced(
    session: AsyncSession, client: Any, app: Any
) -> None:
    """A run soon after a batch; the next not before WATCH_MIN_INTERVAL_S (a run reads each
    site's whole lookback: one per batch was quadratic for a site syncing batch after batch)."""
    from api.anomaly_watch import WATCH_DELAY_S, WATCH_MIN_INTERVAL_S, SideJobs

    site = await make_site(session, app)
    await session.commit()
    jobs = SideJobs(app)
    assert jobs.watch_delay() == WATCH_DELAY_S
    jobs.sites.add(site.org.id)
    assert await jobs.watch_now() is not None
    assert WATCH_MIN_INTERVAL_S - 5 < jobs.watch_delay() <= WATCH_MIN_INTERVAL_S
    assert await jobs.watch_now() is None  # no site waiting: no run, the spacing unchanged
    assert WATCH_MIN_INTERVAL_S - 5 < jobs.watch_delay() <= WATCH_MIN_INTERVAL_S


async def test_a_site_watched_by_another_worker_moments_ago_waits_for_the_next_run(
    session: AsyncSession, client: Any, app: Any
) -> None:
    """Two workers (two SideJobs) each receive batches of one site: the first runs the watch;
    the second skips the site (the same redemptions were just read) and keeps it for its own
    next run, which watches it once the first's run is WATCH_MIN_INTERVAL_S old."""
    from api.anomaly_watch import WATCH_MIN_INTERVAL_S, SideJobs
    from clearing.anomaly_models import AnomalyWatchSite

    site = await make_site(session, app)
    other = await make_site(session, app)
    await session.commit()
    first, second = SideJobs(app), SideJobs(app)
    first.sites.add(site.org.id)
    assert await first.watch_now() is not None
    second.sites.update({site.org.id, other.org.id})
    run = await second.watch_now()  # only the site nobody watched
    assert run is not None
    assert second.sites == {site.org.id}
    assert await second.watch_now() is None  # still too soon: kept again, nothing run
    assert second.sites == {site.org.id}
    async with app.state.sessionmaker() as s, s.begin():  # the first run, long ago
        row = await s.get(AnomalyWatchSite, site.org.id)
        assert row is not None
        row.watched_at -= timedelta(seconds=WATCH_MIN_INTERVAL_S + 1)
    assert await second.watch_now() is not None
    assert second.sites == set()
