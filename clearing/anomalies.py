"""The anomaly watch: rules that look at redemptions after the fact and open alerts for the
operator (and the financers of the programme) to review. Never on the redemption path: a scan
is never refused on a guess; an alert is a question, answered « justifiée » with a note or by
suspending the site (clearing/anomaly_review.py: reading and closing alerts).

Each rule is a function of (session, window, thresholds) returning `Finding`s; `watch` runs
them all and inserts each finding under its fingerprint with ON CONFLICT DO NOTHING, so running
it twice opens nothing new, and an alert once resolved is not opened again for the same subject.
The thresholds come from settings (api/anomaly_watch.py builds `Thresholds` from them);
`RULES` explains each rule in French with its thresholds, for the pages.

| rule           | subject (fingerprint)  | fires when                                         |
|----------------|------------------------|----------------------------------------------------|
| booklet_burst  | site × booklet         | ≥ min(N, size) of its cheques within M minutes     |
| outside_hours  | site × Paris day       | ≥ K redemptions while the site is closed (± grace) |
| daily_spike    | site or user × day     | ≥ floor and ≥ F × own mean or F × peers' median    |
| booklet_spread | booklet                | its cheques redeemed in ≥ C communes in D days     |
| refused_scans  | mediator account × day | ≥ R scans refused as forged or unknown             |

Opening hours are read by `site_opening_hours` — the one narrow place that knows where a site's
hours live (see its docstring); without hours the rule is silent.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from clearing.anomaly_models import Anomaly, AnomalyWatchSite, RefusedScan
from kit.clock import PARIS, paris_day, paris_midnight

# Refusals that say "this code is not one of our cheques": forged QR codes, unknown or
# mistyped serials. Already-redeemed, expired… cheques are real and say nothing of the scanner.
REFUSED_SCAN_CODES = frozenset(
    {"invalid_token", "cheque_not_found", "invalid_serial", "serial_check_failed"}
)


@dataclass(frozen=True)
class Thresholds:
    """Every threshold of the watch (settings `PASSNUM_ANOMALY_*`, kit/settings.py)."""

    lookback_hours: int = 48
    booklet_burst_cheques: int = 5
    booklet_burst_minutes: int = 60
    outside_hours_min: int = 2
    outside_hours_grace_minutes: int = 30
    spike_factor_percent: int = 300
    spike_min_count: int = 20
    spike_history_days: int = 28
    spike_min_history_days: int = 7
    spike_min_peers: int = 3
    spread_communes: int = 3
    spread_days: int = 7
    refused_scans_per_day: int = 10
    refused_scan_retention_days: int = 90


def explain_rules(t: Thresholds) -> dict[str, tuple[str, str]]:
    """Each rule's French title and explanation, with the thresholds in force."""
    factor = _factor_fr(t.spike_factor_percent)
    return {
        "booklet_burst": (
            "Carnet encaissé d'un coup",
            f"Au moins {t.booklet_burst_cheques} chèques d'un même carnet (ou le carnet entier "
            f"s'il en a moins) encaissés au même lieu en {t.booklet_burst_minutes} minutes : "
            "une personne suit en général une séance par chèque.",
        ),
        "outside_hours": (
            "Encaissements hors des horaires",
            f"Au moins {t.outside_hours_min} encaissements dans la journée alors que le lieu est "
            f"fermé selon ses horaires d'ouverture (à {t.outside_hours_grace_minutes} minutes "
            "près). Muette pour un lieu qui n'a pas déclaré ses horaires.",
        ),
        "daily_spike": (
            "Journée inhabituelle",
            f"Un lieu ou un médiateur encaisse dans la journée au moins {t.spike_min_count} "
            f"chèques et {factor} fois sa moyenne des {t.spike_history_days} jours précédents "
            f"(jours d'activité, s'il en a au moins {t.spike_min_history_days}), ou {factor} "
            f"fois la médiane des autres ce jour-là (s'ils sont au moins {t.spike_min_peers}).",
        ),
        "booklet_spread": (
            "Carnet dispersé",
            f"Des chèques d'un même carnet encaissés dans au moins {t.spread_communes} communes "
            f"différentes en {t.spread_days} jours (communes des lieux ; sans coordonnées, le "
            "nombre de communes tient lieu de distance).",
        ),
        "refused_scans": (
            "Scans refusés à répétition",
            f"Au moins {t.refused_scans_per_day} scans refusés dans la journée pour un même "
            "compte parce que le code est falsifié ou inconnu (QR code invalide, numéro "
            "inexistant ou mal formé).",
        ),
    }


STATUS_LABELS = {
    "open": "À examiner",
    "justified": "Justifiée",
    "site_suspended": "Lieu suspendu",
}


@dataclass
class Finding:
    rule: str
    fingerprint: str
    summary: str
    site_id: int | None = None
    programme_id: int | None = None
    user_id: int | None = None
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Window:
    """What one run looks at: redemptions in (start, end], subjects limited to `site_ids`
    when given (the run after an offline batch looks at that site only)."""

    start: datetime
    end: datetime
    site_ids: tuple[int, ...] | None = None

    def days(self) -> list[date]:
        first, last = paris_day(self.start), paris_day(self.end)
        return [first + timedelta(days=n) for n in range((last - first).days + 1)]


# --------------------------------------------------------------------------- helpers


def _factor_fr(percent: int) -> str:
    whole, rest = divmod(percent, 100)
    return str(whole) if rest == 0 else f"{whole},{rest:02d}".rstrip("0")


def _hm(instant: datetime) -> str:
    return instant.astimezone(PARIS).strftime("%H:%M")


def _day_fr(day: date) -> str:
    return day.strftime("%d/%m/%Y")


def _site_clause(window: Window, column: str) -> tuple[str, dict[str, Any]]:
    if window.site_ids is None:
        return "", {}
    return f" AND {column} = ANY(:site_ids)", {"site_ids": list(window.site_ids)}


def _main_programme(programme_ids: Iterable[int]) -> int | None:
    counts = Counter(programme_ids)
    if not counts:
        return None
    return min(counts, key=lambda p: (-counts[p], p))


async def organisation_names(session: AsyncSession, ids: Iterable[int]) -> dict[int, str]:
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    rows = await session.execute(
        sa.text("SELECT id, name FROM organisation WHERE id = ANY(:ids)"), {"ids": wanted}
    )
    return {int(i): str(n) for i, n in rows}


# Rules 1 and 4 read the redemptions of the booklets touched in the window in two statements:
# the booklets, then their cheques' redemptions, the booklets given as a list — no join the
# planner could run once per booklet. Written as one statement, with statistics not yet
# refreshed after a burst (recent instants looking empty), it rescanned the window's
# redemptions once per touched booklet: one watch run after an offline batch took 12 s of
# PostgreSQL (bench/redemption.py, 50,000 redemptions at 4 sites), about a quarter of the
# batches' database time; this way each redemption is read once (0.35 s instead of 3.4 s for
# a site of 10,000 redemptions).
_TOUCHED_BOOKLETS = """
SELECT DISTINCT c.booklet_id
FROM redemption r JOIN cheque c ON c.id = r.cheque_id
WHERE r.reversed_at IS NULL AND r.redeemed_at > :start AND r.redeemed_at <= :end{clause}
"""

_BOOKLET_REDEMPTIONS = sa.text("""
SELECT r.site_id, c.booklet_id, b.number, b.size, r.id, r.redeemed_at, r.programme_id,
       o.commune_insee
FROM cheque c
JOIN booklet b ON b.id = c.booklet_id
JOIN redemption r ON r.cheque_id = c.id
JOIN organisation o ON o.id = r.site_id
WHERE c.booklet_id = ANY(CAST(:booklets AS bigint[]))
  AND r.reversed_at IS NULL AND r.redeemed_at > :since AND r.redeemed_at <= :end
ORDER BY c.booklet_id, r.redeemed_at, r.id
""")


async def _touched_booklet_redemptions(
    session: AsyncSession, window: Window, since: datetime
) -> list[Any]:
    """The live redemptions in (since, window.end] of the booklets with a redemption in the
    window (at `window.site_ids` when given), ordered by booklet, instant and id."""
    clause, params = _site_clause(window, "r.site_id")
    booklets = (await session.execute(
        sa.text(_TOUCHED_BOOKLETS.format(clause=clause)),
        {"start": window.start, "end": window.end, **params})).scalars().all()
    if not booklets:
        return []
    return list((await session.execute(
        _BOOKLET_REDEMPTIONS,
        {"booklets": sorted(booklets), "since": since, "end": window.end})).all())


# --------------------------------------------------------------------------- rule 1


async def booklet_burst(session: AsyncSession, window: Window, t: Thresholds) -> list[Finding]:
    """≥ min(N, size) cheques of one booklet redeemed at one site within M minutes."""
    span = timedelta(minutes=t.booklet_burst_minutes)
    rows = await _touched_booklet_redemptions(session, window, window.start - span)
    # (site, booklet) pairs with a redemption in the window, at the sites looked at
    touched = {(int(r.site_id), int(r.booklet_id)) for r in rows
               if r.redeemed_at > window.start
               and (window.site_ids is None or r.site_id in window.site_ids)}
    groups: dict[tuple[int, int], list[Any]] = defaultdict(list)
    for row in sorted(rows, key=lambda r: (r.site_id, r.booklet_id, r.redeemed_at, r.id)):
        if (int(row.site_id), int(row.booklet_id)) in touched:
            groups[(int(row.site_id), int(row.booklet_id))].append(row)
    names = await organisation_names(session, (site for site, _ in groups))
    findings = []
    for (site_id, booklet_id), items in groups.items():
        need = max(1, min(t.booklet_burst_cheques, int(items[0].size)))
        best: list[Any] = []
        start = 0
        for end in range(len(items)):  # the longest run within the span
            while items[end].redeemed_at - items[start].redeemed_at > span:
                start += 1
            if end - start + 1 > len(best):
                best = items[start : end + 1]
        if len(best) < need or best[-1].redeemed_at <= window.start:
            continue
        minutes = int((best[-1].redeemed_at - best[0].redeemed_at).total_seconds() // 60)
        size = int(items[0].size)
        duration = "en moins d'une minute" if minutes == 0 else f"en {minutes} min"
        what = (
            f"Le carnet entier {items[0].number} ({size} chèques) encaissé"
            if len(best) >= size
            else f"{len(best)} chèques du carnet {items[0].number} (sur {size}) encaissés"
        )
        findings.append(
            Finding(
                rule="booklet_burst",
                fingerprint=f"booklet_burst:{site_id}:{booklet_id}",
                site_id=site_id,
                programme_id=int(best[0].programme_id),
                summary=(
                    f"{what} {duration} à « {names[site_id]} », le "
                    f"{_day_fr(paris_day(best[0].redeemed_at))} de {_hm(best[0].redeemed_at)} "
                    f"à {_hm(best[-1].redeemed_at)}."
                ),
                evidence={
                    "redemption_ids": [int(r.id) for r in best],
                    "booklet_number": str(items[0].number),
                },
            )
        )
    return findings


# --------------------------------------------------------------------------- rule 2


async def site_opening_hours(session: AsyncSession, site_ids: Sequence[int]) -> dict[int, str]:
    """The opening hours (OpenStreetMap `opening_hours` syntax) of these sites, by site id, as
    the site declared them on its profile (`organisation.opening_hours`, validated by
    `pass_.sites`); a site without declared hours is absent, and the rule stays silent for it.
    An itinerant site's stops each have hours of their own and no fixed place: the rule leaves
    them out unless the site also declared hours of its own."""
    if not site_ids:
        return {}
    rows = await session.execute(
        sa.text(
            "SELECT id, opening_hours FROM organisation "
            "WHERE id = ANY(:ids) AND opening_hours IS NOT NULL"
        ),
        {"ids": list(site_ids)},
    )
    return {int(site): str(text).strip() for site, text in rows if str(text).strip()}


def _closed_throughout(hours: Any, instant: datetime, grace: timedelta) -> bool:
    """Closed at `instant` and at `grace` before and after it (a session running over, a
    clock a little off: not an anomaly)."""
    local = instant.astimezone(PARIS).replace(tzinfo=None)
    return not any(hours.is_open(local + delta) for delta in (-grace, timedelta(0), grace))


async def outside_hours(session: AsyncSession, window: Window, t: Thresholds) -> list[Finding]:
    """≥ K redemptions in a Paris day while the site is closed by its declared hours."""
    import opening_hours  # the library that parses and evaluates OSM opening hours

    clause, params = _site_clause(window, "r.site_id")
    rows = (
        await session.execute(
            sa.text(
                "SELECT r.id, r.site_id, r.programme_id, r.redeemed_at FROM redemption r "
                "WHERE r.reversed_at IS NULL AND r.redeemed_at > :start "
                f"AND r.redeemed_at <= :end{clause} ORDER BY r.redeemed_at, r.id"
            ),
            {"start": window.start, "end": window.end, **params},
        )
    ).all()
    declared = await site_opening_hours(session, sorted({int(r.site_id) for r in rows}))
    parsed: dict[int, Any] = {}
    for site_id, text in declared.items():
        try:
            parsed[site_id] = opening_hours.OpeningHours(text)
        except Exception:  # noqa: BLE001 — unparsable hours: no guess, the rule is silent
            continue
    grace = timedelta(minutes=t.outside_hours_grace_minutes)
    outside: dict[tuple[int, date], list[Any]] = defaultdict(list)
    for row in rows:
        hours = parsed.get(int(row.site_id))
        if hours is not None and _closed_throughout(hours, row.redeemed_at, grace):
            outside[(int(row.site_id), paris_day(row.redeemed_at))].append(row)
    names = await organisation_names(session, (site for site, _ in outside))
    findings = []
    for (site_id, day), items in sorted(outside.items()):
        if len(items) < t.outside_hours_min:
            continue
        times = ", ".join(_hm(r.redeemed_at) for r in items[:10])
        findings.append(
            Finding(
                rule="outside_hours",
                fingerprint=f"outside_hours:{site_id}:{day.isoformat()}",
                site_id=site_id,
                programme_id=_main_programme(int(r.programme_id) for r in items),
                summary=(
                    f"{len(items)} encaissements le {_day_fr(day)} à « {names[site_id]} » "
                    f"alors que le lieu est fermé (horaires : {declared[site_id]}) : "
                    f"à {times}{'…' if len(items) > 10 else ''}."
                ),
                evidence={
                    "redemption_ids": [int(r.id) for r in items],
                    "opening_hours": declared[site_id],
                },
            )
        )
    return findings


# --------------------------------------------------------------------------- rule 3


async def _daily_counts(
    session: AsyncSession,
    column: str,
    start: date,
    end: date,
    site_ids: tuple[int, ...] | None = None,
) -> dict[tuple[int, date], int]:
    """Live redemptions per (site or user) and Paris day, days start..end included (at these
    sites only, when given)."""
    scope = " AND r.site_id = ANY(:site_ids)" if site_ids is not None else ""
    rows = await session.execute(
        sa.text(
            f"SELECT {column} AS who, (r.redeemed_at AT TIME ZONE 'Europe/Paris')::date AS day, "
            "count(*) AS n FROM redemption r WHERE r.reversed_at IS NULL "
            f"AND {column} IS NOT NULL AND r.redeemed_at >= :start AND r.redeemed_at < :end"
            f"{scope} GROUP BY 1, 2"
        ),
        {
            "start": paris_midnight(start),
            "end": paris_midnight(end + timedelta(days=1)),
            **({"site_ids": list(site_ids)} if site_ids is not None else {}),
        },
    )
    return {(int(who), day): int(n) for who, day, n in rows}


async def daily_spike(session: AsyncSession, window: Window, t: Thresholds) -> list[Finding]:
    """A site's or a mediator's day far above its own history or its peers' that day."""
    days = window.days()
    first = days[0] - timedelta(days=t.spike_history_days)
    findings: list[Finding] = []
    factor = t.spike_factor_percent / 100
    for kind, column in (("site", "r.site_id"), ("user", "r.user_id")):
        # The subjects' history (at the sites looked at, when the run is scoped: after an
        # offline batch, one site's weeks rather than every site's), and everyone's days of
        # the window for the peers.
        counts = await _daily_counts(session, column, first, days[-1], window.site_ids)
        peer_counts = (
            await _daily_counts(session, column, days[0], days[-1])
            if window.site_ids is not None
            else counts
        )
        by_day: dict[date, dict[int, int]] = defaultdict(dict)
        by_who: dict[int, dict[date, int]] = defaultdict(dict)
        for (who, d), n in peer_counts.items():
            by_day[d][who] = n
        for (who, d), n in counts.items():
            by_who[who][d] = n
        for day in days:
            today = by_day.get(day, {})
            subjects = {w: c for w, c in today.items() if day in by_who.get(w, {})}
            for who, n in sorted(subjects.items()):
                if n < t.spike_min_count:
                    continue
                history = [
                    c
                    for d, c in by_who[who].items()
                    if day - timedelta(days=t.spike_history_days) <= d < day
                ]
                peers = [c for w, c in today.items() if w != who]
                reasons = []
                if len(history) >= t.spike_min_history_days:
                    mean = statistics.fmean(history)
                    if n >= factor * mean:
                        reasons.append(
                            f"{n / mean:.1f}".replace(".", ",")
                            + f" fois sa moyenne ({mean:.1f}".replace(".", ",")
                            + f" par jour d'activité sur {t.spike_history_days} jours)"
                        )
                if len(peers) >= t.spike_min_peers:
                    median = statistics.median(peers)
                    if n >= factor * median:
                        reasons.append(
                            f"{n / median:.1f}".replace(".", ",")
                            + f" fois la médiane des {len(peers)} autres "
                            + ("lieux" if kind == "site" else "médiateurs")
                            + f" ({median:g})".replace(".", ",")
                        )
                if reasons:
                    findings.append(
                        Finding(
                            rule="daily_spike",
                            fingerprint=f"daily_spike:{kind}:{who}:{day}",
                            summary=" et ".join(reasons),
                            evidence={"count": n, "day": day.isoformat()},
                            **({"site_id": who} if kind == "site" else {"user_id": who}),
                        )
                    )
    if not findings:
        return []
    # The evidence (which redemptions) and the subject's names, for the findings only.
    for finding in findings:
        day = date.fromisoformat(finding.evidence["day"])
        column = "site_id" if finding.site_id is not None else "user_id"
        subject = finding.site_id if finding.site_id is not None else finding.user_id
        rows = (
            await session.execute(
                sa.text(
                    "SELECT r.id, r.site_id, r.programme_id FROM redemption r "
                    f"WHERE r.reversed_at IS NULL AND r.{column} = :who "
                    "AND r.redeemed_at >= :start AND r.redeemed_at < :end ORDER BY r.id"
                ),
                {
                    "who": subject,
                    "start": paris_midnight(day),
                    "end": paris_midnight(day + timedelta(days=1)),
                },
            )
        ).all()
        finding.evidence["redemption_ids"] = [int(r.id) for r in rows]
        finding.programme_id = _main_programme(int(r.programme_id) for r in rows)
        if finding.site_id is None:
            sites = Counter(int(r.site_id) for r in rows)
            finding.site_id = min(sites, key=lambda s: (-sites[s], s)) if sites else None
    findings = [
        f
        for f in findings
        if window.site_ids is None or (f.site_id is not None and f.site_id in window.site_ids)
    ]
    names = await organisation_names(
        session, (f.site_id for f in findings if f.site_id is not None)
    )
    emails = {}
    user_ids = sorted({f.user_id for f in findings if f.user_id is not None})
    if user_ids:
        emails = {
            int(i): str(e)
            for i, e in await session.execute(
                sa.text("SELECT id, email FROM app_user WHERE id = ANY(:ids)"), {"ids": user_ids}
            )
        }
    for f in findings:
        day_fr = _day_fr(date.fromisoformat(f.evidence["day"]))
        n = f.evidence["count"]
        who_fr = (
            f"le médiateur {emails.get(f.user_id or 0, f.user_id)}"
            + (f" (« {names[f.site_id]} »)" if f.site_id in names else "")
            if f.user_id is not None
            else f"« {names.get(f.site_id or 0, f.site_id)} »"
        )
        f.summary = f"{n} encaissements le {day_fr} pour {who_fr} : {f.summary}."
    return findings


# --------------------------------------------------------------------------- rule 4


async def booklet_spread(session: AsyncSession, window: Window, t: Thresholds) -> list[Finding]:
    """Cheques of one booklet redeemed in ≥ C different communes (of the sites) in D days."""
    span = timedelta(days=t.spread_days)
    rows = await _touched_booklet_redemptions(session, window, window.start - span)
    groups: dict[int, list[Any]] = defaultdict(list)
    for row in rows:
        groups[int(row.booklet_id)].append(row)
    findings = []
    for booklet_id, items in groups.items():
        best: list[Any] = []
        most = 0
        start = 0
        seen: Counter[str] = Counter()  # communes of items[start : end + 1]
        for end in range(len(items)):  # the (first) window of D days with the most communes
            seen[items[end].commune_insee] += 1
            while items[end].redeemed_at - items[start].redeemed_at > span:
                seen[items[start].commune_insee] -= 1
                if not seen[items[start].commune_insee]:
                    del seen[items[start].commune_insee]
                start += 1
            if len(seen) > most:
                most, best = len(seen), items[start : end + 1]
        communes = sorted({str(r.commune_insee) for r in best})
        if len(communes) < t.spread_communes or best[-1].redeemed_at <= window.start:
            continue
        days = (paris_day(best[-1].redeemed_at) - paris_day(best[0].redeemed_at)).days + 1
        findings.append(
            Finding(
                rule="booklet_spread",
                fingerprint=f"booklet_spread:{booklet_id}",
                site_id=int(best[-1].site_id),
                programme_id=int(best[0].programme_id),
                summary=(
                    f"Chèques du carnet {items[0].number} encaissés dans {len(communes)} "
                    f"communes en {days} jour{'s' if days > 1 else ''} "
                    f"({len({r.site_id for r in best})} lieux ; communes INSEE "
                    f"{', '.join(communes)})."
                ),
                evidence={
                    "redemption_ids": [int(r.id) for r in best],
                    "booklet_number": str(items[0].number),
                    "communes": communes,
                },
            )
        )
    return findings


# --------------------------------------------------------------------------- rule 5


async def record_refused_scans(
    session: AsyncSession, rows: Sequence[tuple[int, int, str, datetime]]
) -> int:
    """Record refused scans (user_id, site_id, error_code, refused_at) — only the refusals
    that say the code is forged or unknown are kept. Returns how many were written."""
    kept = [r for r in rows if r[2] in REFUSED_SCAN_CODES]
    if kept:
        await session.execute(
            insert(RefusedScan),
            [
                {"user_id": u, "site_id": s, "error_code": c, "refused_at": at}
                for u, s, c, at in kept
            ],
        )
    return len(kept)


async def refused_scans(session: AsyncSession, window: Window, t: Thresholds) -> list[Finding]:
    """≥ R scans of one account refused in a Paris day as forged or unknown codes."""
    days = window.days()
    clause, params = _site_clause(window, "s.site_id")
    rows = (
        await session.execute(
            sa.text(
                "SELECT s.user_id, (s.refused_at AT TIME ZONE 'Europe/Paris')::date AS day, "
                "count(*) AS n, min(s.site_id) AS site_id, "
                "array_agg(DISTINCT s.error_code) AS codes, u.email "
                "FROM refused_scan s LEFT JOIN app_user u ON u.id = s.user_id "
                f"WHERE s.refused_at >= :start AND s.refused_at < :end{clause} "
                "GROUP BY s.user_id, 2, u.email HAVING count(*) >= :need"
            ),
            {
                "start": paris_midnight(days[0]),
                "end": paris_midnight(days[-1] + timedelta(days=1)),
                "need": t.refused_scans_per_day,
                **params,
            },
        )
    ).all()
    names = await organisation_names(session, (int(r.site_id) for r in rows))
    labels = {
        "invalid_token": "QR code falsifié ou illisible",
        "cheque_not_found": "chèque inconnu",
        "invalid_serial": "numéro mal formé",
        "serial_check_failed": "numéro erroné",
    }
    return [
        Finding(
            rule="refused_scans",
            fingerprint=f"refused_scans:{int(r.user_id)}:{r.day.isoformat()}",
            site_id=int(r.site_id),
            user_id=int(r.user_id),
            summary=(
                f"{int(r.n)} scans refusés le {_day_fr(r.day)} pour le compte "
                f"{r.email or r.user_id} (« {names.get(int(r.site_id), r.site_id)} ») : "
                f"{', '.join(sorted(labels.get(c, c) for c in r.codes))}."
            ),
            evidence={"redemption_ids": [], "refused_scans": int(r.n)},
        )
        for r in rows
    ]


RULE_FUNCTIONS = (booklet_burst, outside_hours, daily_spike, booklet_spread, refused_scans)


# --------------------------------------------------------------------------- the watch


@dataclass(frozen=True)
class WatchRun:
    found: int
    opened: list[int]
    by_rule: dict[str, int]


async def claim_sites(
    session: AsyncSession, site_ids: Sequence[int], *, now: datetime, min_interval: timedelta
) -> list[int]:
    """The sites among `site_ids` on which no watch run started in the `min_interval` before
    `now`, from any worker, now marked as started: the others were watched moments ago, over
    the same redemptions. Its own short transaction (the caller's), not the run's: a worker
    never waits on another's run."""
    if not site_ids:
        return []
    table = AnomalyWatchSite.__table__
    stmt = insert(table).values([{"site_id": s, "watched_at": now} for s in sorted(set(site_ids))])
    stmt = stmt.on_conflict_do_update(
        index_elements=["site_id"],
        set_={"watched_at": stmt.excluded.watched_at},
        where=table.c.watched_at <= now - min_interval,
    ).returning(table.c.site_id)
    return sorted(int(site) for site in (await session.execute(stmt)).scalars())


async def watch(
    session: AsyncSession,
    *,
    now: datetime,
    thresholds: Thresholds,
    site_ids: Sequence[int] | None = None,
) -> WatchRun:
    """Run every rule over the last `lookback_hours` and open an alert per new finding.
    Idempotent: a finding already recorded (open or resolved) is not opened again."""
    window = Window(
        start=now - timedelta(hours=thresholds.lookback_hours),
        end=now,
        site_ids=tuple(site_ids) if site_ids is not None else None,
    )
    findings: list[Finding] = []
    for rule in RULE_FUNCTIONS:
        findings.extend(await rule(session, window, thresholds))
    opened: list[int] = []
    by_rule: Counter[str] = Counter()
    # Up to 1,000 findings a statement: each run finds again those already recorded (a run
    # after an offline batch in bench/redemption.py: over 1,000, one statement each before).
    for chunk in range(0, len(findings), 1000):
        rows = await session.execute(
            insert(Anomaly)
            .values([
                {"rule": f.rule, "fingerprint": f.fingerprint, "site_id": f.site_id,
                 "programme_id": f.programme_id, "user_id": f.user_id, "opened_at": now,
                 "summary": f.summary, "evidence": f.evidence}
                for f in findings[chunk : chunk + 1000]
            ])
            .on_conflict_do_nothing(index_elements=["fingerprint"])
            .returning(col(Anomaly.id), col(Anomaly.rule))
        )
        for new_id, rule_name in sorted(rows.all()):
            opened.append(int(new_id))
            by_rule[rule_name] += 1
    await session.execute(
        sa.delete(RefusedScan).where(
            col(RefusedScan.refused_at)
            < now - timedelta(days=thresholds.refused_scan_retention_days)
        )
    )
    return WatchRun(found=len(findings), opened=opened, by_rule=dict(by_rule))
