"""The API's side of the anomaly watch (clearing/anomalies.py): its thresholds from settings,
the refused scans recorded without slowing the scan, and a watch of a site run shortly after
one of its offline batches.

Both side jobs run after the answer, in tasks of their own with their own transactions, and
swallow their errors (logged): a scan never waits on the watch, nor fails because of it. A site's
batches may reach several workers (api/workers.py): a worker skips a site another one watched
in the last WATCH_MIN_INTERVAL_S, and keeps it for its own next run.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from datetime import datetime, timedelta
from typing import Any

import structlog
from starlette.requests import Request

from clearing import anomalies
from kit.clock import utcnow
from kit.settings import Settings

log = structlog.get_logger("passnum.anomalies")

# Scans refused before being written down; beyond this many (a flood), the oldest are dropped:
# the rule needs "many", not every one.
BUFFER = 10_000
FLUSH_DELAY_S = 0.5
WATCH_DELAY_S = 2.0
# A worker starts a watch run at most this often: the sites of the batches received meanwhile
# wait for the next one. A run reads each of its sites' last `lookback_hours`, so at a site
# syncing batch after batch a run per batch was quadratic (measured in bench/redemption.py:
# a third of the server's CPU during the batches).
WATCH_MIN_INTERVAL_S = 30.0


def thresholds(settings: Settings) -> anomalies.Thresholds:
    return anomalies.Thresholds(
        lookback_hours=settings.anomaly_lookback_hours,
        booklet_burst_cheques=settings.anomaly_booklet_burst_cheques,
        booklet_burst_minutes=settings.anomaly_booklet_burst_minutes,
        outside_hours_min=settings.anomaly_outside_hours_min,
        outside_hours_grace_minutes=settings.anomaly_outside_hours_grace_minutes,
        spike_factor_percent=settings.anomaly_spike_factor_percent,
        spike_min_count=settings.anomaly_spike_min_count,
        spike_history_days=settings.anomaly_spike_history_days,
        spike_min_history_days=settings.anomaly_spike_min_history_days,
        spike_min_peers=settings.anomaly_spike_min_peers,
        spread_communes=settings.anomaly_spread_communes,
        spread_days=settings.anomaly_spread_days,
        refused_scans_per_day=settings.anomaly_refused_scans_per_day,
        refused_scan_retention_days=settings.anomaly_refused_scan_retention_days,
    )


class SideJobs:
    """Per application: the refused scans waiting to be written, and the sites waiting for a
    watch run. One task at a time does each, on the application's sessionmaker."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.refused: deque[tuple[int, int, str, datetime]] = deque(maxlen=BUFFER)
        self.sites: set[int] = set()
        self._flusher: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._watched_at = float("-inf")  # time.monotonic() when the last run started

    # -- refused scans

    def note_refusal(self, user_id: int, site_id: int, code: str) -> None:
        if code not in anomalies.REFUSED_SCAN_CODES:
            return
        self.refused.append((user_id, site_id, code, utcnow()))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(FLUSH_DELAY_S)  # a burst of refusals is written in one statement
        await self.flush()

    async def flush(self) -> int:
        rows = []
        while self.refused:
            rows.append(self.refused.popleft())
        if not rows:
            return 0
        try:
            async with self.app.state.sessionmaker() as session, session.begin():
                return await anomalies.record_refused_scans(session, rows)
        except Exception:  # noqa: BLE001 — never let the watch hurt the service
            log.exception("refused_scans_not_recorded", count=len(rows))
            return 0

    # -- watch after an offline batch

    def watch_site(self, site_id: int) -> None:
        self.sites.add(site_id)
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.get_running_loop().create_task(self._watch_later())

    def watch_delay(self) -> float:
        """Seconds until the next run may start: after the batch's transaction (batches
        coalesce), and not sooner than WATCH_MIN_INTERVAL_S after the last run."""
        return max(WATCH_DELAY_S, self._watched_at + WATCH_MIN_INTERVAL_S - time.monotonic())

    async def _watch_later(self) -> None:
        await asyncio.sleep(self.watch_delay())
        await self.watch_now()
        if self.sites:  # sites another worker had just watched, or noted during this run
            self._watcher = asyncio.get_running_loop().create_task(self._watch_later())

    async def watch_now(self) -> anomalies.WatchRun | None:
        """A run on the sites waiting, less those another worker watched in the last
        WATCH_MIN_INTERVAL_S (`anomalies.claim_sites`): they wait for this worker's next run,
        by which time their redemptions since that run may need a look."""
        sites, self.sites = sorted(self.sites), set()
        if not sites:
            return None
        self._watched_at = time.monotonic()
        try:
            now = utcnow()
            async with self.app.state.sessionmaker() as session, session.begin():
                claimed = await anomalies.claim_sites(
                    session, sites, now=now, min_interval=timedelta(seconds=WATCH_MIN_INTERVAL_S))
            self.sites.update(set(sites) - set(claimed))
            if not claimed:
                return None
            sites = claimed
            async with self.app.state.sessionmaker() as session, session.begin():
                run = await anomalies.watch(
                    session,
                    now=now,
                    thresholds=thresholds(self.app.state.settings),
                    site_ids=sites,
                )
            if run.opened:
                log.info("anomalies_opened", count=len(run.opened), sites=sites, **run.by_rule)
            return run
        except Exception:  # noqa: BLE001
            log.exception("anomaly_watch_failed", sites=sites)
            return None


def side_jobs(app: Any) -> SideJobs:
    jobs = getattr(app.state, "anomaly_jobs", None)
    if jobs is None:
        jobs = app.state.anomaly_jobs = SideJobs(app)
    return jobs


def note_refusal(request: Request, principal: Any, answer: Any, replayed: bool = False) -> None:
    """Record a refused scan (forged or unknown code) for the watch, after the answer: one call
    where a redemption is refused (routes of api/routers/redemptions.py, api/web/mediator.py)."""
    if replayed or answer.status < 400:
        return
    try:
        code = str(answer.json()["error"]["code"])
    except (KeyError, TypeError, ValueError):
        return
    side_jobs(request.app).note_refusal(principal.user_id, principal.organisation_id, code)


def note_refusals(request: Request, principal: Any, answered: list[tuple[Any, bool]]) -> None:
    for answer, replayed in answered:
        note_refusal(request, principal, answer, replayed)


def watch_after_batch(request: Request, principal: Any) -> None:
    """Run the watch on the site of an offline batch a moment later (issue 16)."""
    side_jobs(request.app).watch_site(principal.organisation_id)
