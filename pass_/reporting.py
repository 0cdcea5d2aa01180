"""Read-only figures of the programmes for their dashboards: cheques by stage, and breakdowns by
day, démarche family, beneficiaries' need level and commune of the site.

Only counting and summing here (no rule). The figures are not counted from the cheques at each
view (3 M cheques for a national programme): they are summed into `figure_rollup` by
`refresh_rollup`, a background job that reads the sealed journal from where it stopped, like
the sealer (`passnum serve` runs it, `passnum rollup` runs it once). Every change of a cheque's
stage writes a ledger entry: an activation (handed out), a redemption or its reversal, an
expiry, a cancellation; each sealed entry is counted once, in sealing order, and the cursor
says up to which seal. Pages show how far behind the journal they are (`as_of`, `pending`).
The full audit (`audit_rollup`) recounts the whole chain up to the cursor and compares.

Cheques not handed out yet (stock) write no entry: they are counted from their booklets
(partial index `ix_booklet_not_handed_out`), a few per programme.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from ledger.audit import Difference

ROLLUP_LOCK_KEY = 0x50_4E_52_4F_4C_4C  # "PNROLL": one refresh at a time
TOP_COMMUNES = 20  # the dashboard lists the first communes by value, then « autres »


@dataclass(frozen=True)
class Figure:
    count: int = 0
    value_cents: int = 0


@dataclass(frozen=True)
class Breakdown:
    """One line of a breakdown: its key (démarche family, need level, INSEE code…)."""

    key: str | None
    handed_out: Figure = field(default_factory=Figure)
    redeemed: Figure = field(default_factory=Figure)


@dataclass(frozen=True)
class ProgrammeDashboard:
    printed: Figure  # every cheque made, in stock or not
    handed_out: Figure  # activated for a beneficiary (at the desk or from stock)
    redeemed: Figure
    expired: Figure
    cancelled: Figure  # cancelled after activation (lost or stolen booklets)
    by_demarche: list[Breakdown]
    by_need_level: list[Breakdown]
    by_commune: list[Breakdown]  # redemptions by the site's commune, the first TOP_COMMUNES
    other_communes: Breakdown | None = None  # the rest, summed (key: how many communes)
    as_of: datetime | None = None  # when the rollup last counted
    pending: int = 0  # sealed entries not counted yet
    totals: StageTotals | None = None  # for `programme_figures`


@dataclass(frozen=True)
class StageTotals:
    """A programme's value by stage, from the rollup, and its cheques not handed out."""

    handed_out: Figure
    redeemed: Figure
    expired: Figure
    cancelled: Figure
    not_handed_out: int  # cheques printed for stock (in stock or cancelled from stock)
    in_stock: int

    @property
    def active_cents(self) -> int:
        return (self.handed_out.value_cents - self.redeemed.value_cents
                - self.expired.value_cents - self.cancelled.value_cents)


# ------------------------------------------------------------------------------ the rollup

# What each sealed entry in (after, upto] adds, per programme, dimension, key and stage.
# A redemption's key is `redeem:<id>`, its reversal's `reverse:<id>`; an activation's and a
# cancellation's memo names the booklet, an expiry's the programme and its day. `todo` is
# written into each of its three uses (NOT MATERIALIZED): read once into a CTE, its rows
# filtered by kind were guessed at 1 % of them, and 4 M redemptions were joined one index
# lookup at a time (the audit's recount of 4.7 M seals at 10 M cheques: 91 s, now 29 s; a
# catch-up of 1 M seals: 24 s, now 10 s; a few thousand seals: unchanged).
_COUNTED = """
WITH todo AS NOT MATERIALIZED (
    SELECT e.id, e.idempotency_key AS key, e.kind, e.memo, e.created_at
    FROM ledger_seal s JOIN ledger_entry e ON e.id = s.entry_id
    WHERE s.sealed_seq > :after AND s.sealed_seq <= :upto
      AND e.kind IN ('activation', 'cancellation', 'expiry', 'redemption',
                     'redemption_reversal')
), ev AS (
    SELECT r.programme_id, 'redeemed' AS stage,
           CASE WHEN t.kind = 'redemption' THEN 1 ELSE -1 END AS sign,
           CAST(1 AS bigint) AS cheques, r.value_cents AS value,
           CAST(timezone('Europe/Paris', r.redeemed_at) AS date) AS day,
           coalesce(r.demarche_family, '') AS demarche, o.commune_insee AS commune,
           CAST(b.need_level AS text) AS need
    FROM todo t
    JOIN redemption r ON r.id = CAST(split_part(t.key, ':', 2) AS bigint)
    JOIN organisation o ON o.id = r.site_id
    JOIN cheque c ON c.id = r.cheque_id
    JOIN booklet k ON k.id = c.booklet_id
    LEFT JOIN beneficiary b ON b.id = k.beneficiary_id
    WHERE t.kind IN ('redemption', 'redemption_reversal')
    UNION ALL
    SELECT k.programme_id,
           CASE WHEN t.kind = 'activation' THEN 'handed_out' ELSE 'cancelled' END, 1,
           CAST(t.memo ->> 'cheques' AS bigint), v.value,
           CAST(timezone('Europe/Paris', t.created_at) AS date), NULL, NULL,
           CAST(b.need_level AS text)
    FROM todo t
    JOIN booklet k ON k.id = CAST(t.memo ->> 'booklet_id' AS bigint)
    LEFT JOIN beneficiary b ON b.id = k.beneficiary_id
    CROSS JOIN LATERAL (SELECT sum(p.amount_cents) AS value FROM ledger_posting p
                        WHERE p.entry_id = t.id AND p.amount_cents > 0) v
    WHERE t.kind IN ('activation', 'cancellation')
    UNION ALL
    SELECT CAST(t.memo ->> 'programme_id' AS bigint), 'expired', 1,
           CAST(t.memo ->> 'cheques' AS bigint), v.value, CAST(t.memo ->> 'day' AS date),
           NULL, NULL, NULL
    FROM todo t
    CROSS JOIN LATERAL (SELECT sum(p.amount_cents) AS value FROM ledger_posting p
                        WHERE p.entry_id = t.id AND p.amount_cents > 0) v
    WHERE t.kind = 'expiry'
)
SELECT programme_id, dimension, key, stage,
       CAST(sum(sign * cheques) AS bigint) AS cheques,
       CAST(sum(sign * value) AS bigint) AS value_cents
FROM (
    SELECT programme_id, 'stage' AS dimension, '' AS key, stage, sign, cheques, value FROM ev
    UNION ALL
    SELECT programme_id, 'day', CAST(day AS text), stage, sign, cheques, value FROM ev
    UNION ALL
    SELECT programme_id, 'demarche', demarche, stage, sign, cheques, value FROM ev
    WHERE stage = 'redeemed'
    UNION ALL
    SELECT programme_id, 'commune', commune, stage, sign, cheques, value FROM ev
    WHERE stage = 'redeemed'
    UNION ALL
    SELECT programme_id, 'need', need, stage, sign, cheques, value FROM ev
    WHERE stage IN ('handed_out', 'redeemed') AND need IS NOT NULL
) x
GROUP BY programme_id, dimension, key, stage
"""

_ADD = text(f"""
INSERT INTO figure_rollup (programme_id, dimension, key, stage, cheques, value_cents)
SELECT * FROM ({_COUNTED}) counted
ON CONFLICT (programme_id, dimension, key, stage) DO UPDATE
SET cheques = figure_rollup.cheques + EXCLUDED.cheques,
    value_cents = figure_rollup.value_cents + EXCLUDED.value_cents
""")

_CURSOR = text("SELECT sealed_seq, updated_at FROM figure_rollup_cursor WHERE id = 1")
_HEAD = text("SELECT sealed_seq FROM ledger_seal ORDER BY sealed_seq DESC LIMIT 1")
_MOVE = text("UPDATE figure_rollup_cursor SET sealed_seq = :upto, updated_at = now() "
             "WHERE id = 1")


async def refresh_rollup(session: AsyncSession, *, limit: int = 1_000_000,
                         wait: bool = True) -> int:
    """Count the sealed entries after the cursor (at most `limit` of them) into the rollup and
    move the cursor; return how many seals were read. The caller commits. With `wait=False`,
    return 0 at once if another refresh holds the lock."""
    lock = "pg_advisory_xact_lock" if wait else "pg_try_advisory_xact_lock"
    got = (await session.execute(text(f"SELECT {lock}(:k)"), {"k": ROLLUP_LOCK_KEY})).scalar()
    if got is False:
        return 0
    cursor = (await session.execute(_CURSOR)).one()[0]
    head = (await session.execute(_HEAD)).scalar() or 0
    upto = min(head, cursor + limit)
    if upto <= cursor:
        return 0
    await session.execute(_ADD, {"after": cursor, "upto": upto})
    await session.execute(_MOVE, {"upto": upto})
    return upto - cursor


async def refresh_rollup_once(sessionmaker: Any, *, limit: int = 1_000_000) -> int:
    """Count everything sealed so far, one committed transaction per `limit` seals (CLI)."""
    total = 0
    while True:
        async with sessionmaker() as session, session.begin():
            done = await refresh_rollup(session, limit=limit)
        total += done
        if done < limit:
            return total


async def run_rollup_loop(sessionmaker: Any, interval: float, *, limit: int = 1_000_000,
                          stop: Any = None) -> None:
    """Refresh the rollup every `interval` seconds (at once again while there is more) until
    `stop` is set or the task is cancelled. Errors are logged and retried: figures only lag."""
    import asyncio

    import structlog

    log = structlog.get_logger()
    stop = stop or asyncio.Event()
    while not stop.is_set():
        done = 0
        try:
            async with sessionmaker() as session, session.begin():
                done = await refresh_rollup(session, limit=limit, wait=False)
        except Exception:  # noqa: BLE001 — a background job: log, wait, retry
            log.exception("rollup_failed")
        if done >= limit:
            continue
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval)
        except TimeoutError:
            pass


async def rollup_lag(session: AsyncSession) -> tuple[datetime | None, int]:
    """When the rollup last counted, and how many sealed entries it has not counted yet."""
    cursor, updated_at = (await session.execute(_CURSOR)).one()
    head = (await session.execute(_HEAD)).scalar() or 0
    return updated_at, max(0, head - cursor)


# ------------------------------------------------------------------------------ reading

_ROLLUP = text("""
SELECT dimension, key, stage, cheques, value_cents FROM figure_rollup
WHERE programme_id = :programme_id AND dimension IN ('stage', 'demarche', 'need', 'commune')
""")

# Cheques made for stock and not handed out (in stock, or cancelled from stock), per programme.
_NOT_HANDED_OUT = """
SELECT k.programme_id, CAST(coalesce(sum(k.size), 0) AS bigint),
       CAST(coalesce(sum(k.size) FILTER (WHERE k.status = 'in_stock'), 0) AS bigint)
FROM booklet k WHERE k.handed_out_at IS NULL {where}
GROUP BY k.programme_id
"""

_STAGES_ALL = """
SELECT programme_id, stage, cheques, value_cents FROM figure_rollup WHERE dimension = 'stage'
"""


def _stage_figures(rows: list[tuple[str, int, int]], not_handed_out: int,
                   in_stock: int) -> StageTotals:
    by_stage = {stage: Figure(int(n), int(v)) for stage, n, v in rows}
    return StageTotals(
        handed_out=by_stage.get("handed_out", Figure()),
        redeemed=by_stage.get("redeemed", Figure()),
        expired=by_stage.get("expired", Figure()),
        cancelled=by_stage.get("cancelled", Figure()),
        not_handed_out=not_handed_out,
        in_stock=in_stock,
    )


async def stage_totals(session: AsyncSession, programme_id: int | list[int] | None = None,
                       *, stock: bool = True) -> dict[int, StageTotals]:
    """Every programme's totals by stage (or those of the given ones), in two queries
    whatever the number of programmes (the operator's pages). `stock=False` leaves out the
    cheques not handed out (zero), for lists that do not show them."""
    ids = [programme_id] if isinstance(programme_id, int) else programme_id
    one = "" if ids is None else " AND programme_id = ANY(CAST(:p AS bigint[]))"
    args = {} if ids is None else {"p": ids}
    rows: dict[int, list[tuple[str, int, int]]] = {}
    for pid, stage, n, v in (await session.execute(text(_STAGES_ALL + one), args)).all():
        rows.setdefault(pid, []).append((stage, n, v))
    stocked = {pid: (n, s) for pid, n, s in (await session.execute(
        text(_NOT_HANDED_OUT.format(where=one.replace("programme_id", "k.programme_id"))),
        args)).all()} if stock else {}
    return {pid: _stage_figures(rows.get(pid, []), *stocked.get(pid, (0, 0)))
            for pid in rows.keys() | stocked.keys()}


async def programme_dashboard(session: AsyncSession, *, programme_id: int,
                              top_communes: int = TOP_COMMUNES) -> ProgrammeDashboard:
    """The programme's figures from the rollup; the caller has checked the viewer may see the
    programme."""
    args = {"programme_id": programme_id}
    stages: list[tuple[str, int, int]] = []
    demarche: list[Breakdown] = []
    need: dict[str, dict[str, Figure]] = {}
    communes: list[Breakdown] = []
    for dimension, key, stage, n, v in (await session.execute(_ROLLUP, args)).all():
        figure = Figure(int(n), int(v))
        if dimension == "stage":
            stages.append((stage, n, v))
        elif n == 0 and v == 0:
            continue  # everything reversed
        elif dimension == "demarche":
            demarche.append(Breakdown(key=key or None, redeemed=figure))
        elif dimension == "commune":
            communes.append(Breakdown(key=key, redeemed=figure))
        elif dimension == "need":
            need.setdefault(key, {})[stage] = figure
    stock = (await session.execute(
        text(_NOT_HANDED_OUT.format(where="AND k.programme_id = :programme_id")), args)).first()
    totals = _stage_figures(stages, *(stock[1:] if stock else (0, 0)))
    face = (await session.execute(text("SELECT face_value_cents FROM programme WHERE id = :p"),
                                  {"p": programme_id})).scalar() or 0
    demarche.sort(key=lambda b: (-b.redeemed.value_cents, b.key or "~"))
    communes.sort(key=lambda b: (-b.redeemed.value_cents, b.key or ""))
    rest = communes[top_communes:]
    other = None
    if rest:
        other = Breakdown(key=str(len(rest)), redeemed=Figure(
            sum(b.redeemed.count for b in rest), sum(b.redeemed.value_cents for b in rest)))
    as_of, pending = await rollup_lag(session)
    return ProgrammeDashboard(
        printed=Figure(totals.handed_out.count + totals.not_handed_out,
                       totals.handed_out.value_cents + totals.not_handed_out * face),
        handed_out=totals.handed_out,
        redeemed=totals.redeemed,
        expired=totals.expired,
        cancelled=totals.cancelled,
        by_demarche=demarche,
        by_need_level=[
            Breakdown(key=k, handed_out=v.get("handed_out", Figure()),
                      redeemed=v.get("redeemed", Figure()))
            for k, v in sorted(need.items())
        ],
        by_commune=communes[:top_communes],
        other_communes=other,
        as_of=as_of,
        pending=pending,
        totals=totals,
    )


# ------------------------------------------------------------------------------ audit

_RECOUNT = text(f"""
WITH counted AS ({_COUNTED}),
stored AS (SELECT * FROM figure_rollup WHERE cheques <> 0 OR value_cents <> 0)
SELECT coalesce(c.programme_id, s.programme_id), coalesce(c.dimension, s.dimension),
       coalesce(c.key, s.key), coalesce(c.stage, s.stage),
       s.cheques, s.value_cents, c.cheques, c.value_cents
FROM (SELECT * FROM counted WHERE cheques <> 0 OR value_cents <> 0) c
FULL JOIN stored s USING (programme_id, dimension, key, stage)
WHERE s.cheques IS DISTINCT FROM c.cheques OR s.value_cents IS DISTINCT FROM c.value_cents
ORDER BY 1, 2, 3, 4
LIMIT 20
""")

# The recount above trusts the journal; the journal's stage totals must match the cheques'
# statuses, which is what the rollup's figures claim about them.
_CHEQUE_STAGES = text("""
SELECT programme_id,
       count(*) FILTER (WHERE activated_at IS NOT NULL),
       coalesce(sum(value_cents) FILTER (WHERE activated_at IS NOT NULL), 0),
       count(*) FILTER (WHERE status = 'redeemed'),
       coalesce(sum(value_cents) FILTER (WHERE status = 'redeemed'), 0),
       count(*) FILTER (WHERE status = 'expired'),
       coalesce(sum(value_cents) FILTER (WHERE status = 'expired'), 0),
       count(*) FILTER (WHERE status = 'cancelled' AND activated_at IS NOT NULL),
       coalesce(sum(value_cents) FILTER (WHERE status = 'cancelled'
                                         AND activated_at IS NOT NULL), 0)
FROM cheque GROUP BY programme_id
""")


async def audit_rollup(session: AsyncSession) -> list[Difference]:
    """The rollup's figures against a recount of the whole sealed chain up to its cursor, and,
    when nothing is left to count, its stage totals against the cheques themselves."""
    cursor = (await session.execute(_CURSOR)).one()[0]
    found = []
    for pid, dimension, key, stage, n, v, want_n, want_v in (
            await session.execute(_RECOUNT, {"after": 0, "upto": cursor})).all():
        found.append(Difference(
            "rollup_mismatch",
            f"Programme {pid} : les chiffres affichés ({dimension} {key or '—'}, {stage}) "
            f"donnent {n or 0} chèque(s) pour {v or 0} centimes ; le journal en donne "
            f"{want_n or 0} pour {want_v or 0}.",
            details={"programme_id": pid, "dimension": dimension, "key": key, "stage": stage,
                     "stored": [n, v], "recounted": [want_n, want_v]}))
    _, pending = await rollup_lag(session)
    unsealed = (await session.execute(text(
        "SELECT EXISTS (SELECT 1 FROM ledger_entry e WHERE NOT EXISTS "
        "(SELECT 1 FROM ledger_seal s WHERE s.entry_id = e.id) AND e.xact >= "
        "coalesce((SELECT open_from FROM ledger_seal ORDER BY sealed_seq DESC LIMIT 1), 0))")
    )).scalar()
    if found or pending or unsealed:
        return found
    totals = await stage_totals(session)
    for pid, *figures in (await session.execute(_CHEQUE_STAGES)).all():
        t = totals.get(pid)
        shown = ([0] * 8 if t is None else
                 [t.handed_out.count, t.handed_out.value_cents, t.redeemed.count,
                  t.redeemed.value_cents, t.expired.count, t.expired.value_cents,
                  t.cancelled.count, t.cancelled.value_cents])
        if [int(x) for x in figures] != shown:
            found.append(Difference(
                "rollup_stage_mismatch",
                f"Programme {pid} : les chiffres par étape affichés ne correspondent pas aux "
                "chèques.",
                details={"programme_id": pid, "shown": shown,
                         "cheques": [int(x) for x in figures]}))
    return found


# ------------------------------------------------------------------------------ programme pages


def programme_figures(programme: Any, totals: StageTotals | None) -> Any:
    """The programme's `ProgrammeFigures` (capacity from the programme row, values by stage
    from the rollup): what `programmes.programme_figures` counts from the cheques, without
    reading them."""
    from pass_.schemas import ProgrammeFigures

    t = totals or _stage_figures([], 0, 0)
    return ProgrammeFigures(
        issuing_capacity_cents=programme.issuing_capacity_cents,
        issued_value_cents=programme.issued_value_cents,
        remaining_capacity_cents=programme.issuing_capacity_cents - programme.issued_value_cents,
        active_cents=t.active_cents,
        redeemed_cents=t.redeemed.value_cents,
        expired_cents=t.expired.value_cents,
        cancelled_cents=t.cancelled.value_cents,
        in_stock_cheques=t.in_stock,
    )


@dataclass(frozen=True)
class ListFigures:
    """What the lists of programmes show of each: capacity, issued, redeemed."""

    issuing_capacity_cents: int
    issued_value_cents: int
    redeemed_cents: int


async def figures_of(session: AsyncSession, programmes: list[Any]) -> dict[int, Any]:
    """`programme_figures` of every given programme, in two queries."""
    if not programmes:
        return {}
    # All of them (the operator) in one scan; a few (an issuer, a financer) by their ids.
    totals = await stage_totals(session, None if len(programmes) > 50
                                else [p.id for p in programmes])
    return {p.id: programme_figures(p, totals.get(p.id)) for p in programmes}


async def list_figures_of(session: AsyncSession, programmes: list[Any]) -> dict[int, ListFigures]:
    """The lists' figures of every given programme, in one read of the rollup."""
    totals = await stage_totals(session, stock=False)
    return {p.id: ListFigures(
        issuing_capacity_cents=p.issuing_capacity_cents,
        issued_value_cents=p.issued_value_cents,
        redeemed_cents=(t.redeemed.value_cents if (t := totals.get(p.id)) else 0),
    ) for p in programmes}


async def organisation_counts(session: AsyncSession) -> dict[str, int]:
    """How many organisations of each kind (the operator's home)."""
    rows = await session.execute(text("SELECT kind, count(*) FROM organisation GROUP BY kind"))
    return {kind: int(n) for kind, n in rows.all()}
