"""The anomaly watch (issue 16): each rule fires on a case built for it and stays quiet on a
normal day; a second run opens nothing new; alerts are read and closed through the API with the
roles of the contract; refused scans are recorded by the API without being on the scan's path.

Cases are real redemptions through pass_.redemption (tests/clearing/factories.py, in 2024, at
chosen instants). Each test's sites and booklets are its own, so assertions look at them only
(the run's database holds other tests' redemptions, which the watch may flag too)."""

from __future__ import annotations

import random
import uuid
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from clearing import anomalies, anomaly_review
from clearing.anomalies import Thresholds
from clearing.anomaly_models import Anomaly
from kit.clock import PARIS, UTC
from pass_ import accounts, redemption
from pass_.enums import OrganisationKind, Qualification, Role, Service
from pass_.models import Organisation
from pass_.schemas import ChequeRead, UserCreate
from pass_.tokens import Keyring
from tests.clearing.factories import Scheme, issue_cheques, make_scheme, make_site
from tests.factories import make_actor


@pytest.fixture
def keyring(tmp_path: Any) -> Keyring:
    return Keyring.load_or_create(tmp_path / "keys")


def day_of_2024() -> date:
    """A weekday of 2024 (Monday to Wednesday) few other tests redeem on."""
    day = date(2024, 9, 2) + timedelta(days=7 * random.randrange(0, 12))
    return day + timedelta(days=random.randrange(0, 3))


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=PARIS).astimezone(UTC)


async def redeem(
    session: AsyncSession,
    scheme: Scheme,
    site: Organisation,
    cheque: ChequeRead,
    when: datetime,
    user_id: int | None = None,
) -> int:
    done = await redemption.redeem_cheque(
        session,
        keyring=scheme.keyring,
        site_id=site.id,  # type: ignore[arg-type]
        user_id=user_id,
        code=cheque.serial,
        service=Service.realiser_demarche,
        demarche_family=None,
        now=when,
    )
    return int(done.id)


async def run(session: AsyncSession, now: datetime, **overrides: Any) -> anomalies.WatchRun:
    return await anomalies.watch(session, now=now, thresholds=Thresholds(**overrides))


async def alerts(session: AsyncSession, rule: str, **where: Any) -> list[Anomaly]:
    found = await anomaly_review.list_anomalies(session, status=None)
    return [
        a for a in found if a.rule == rule and all(getattr(a, k) == v for k, v in where.items())
    ]


async def booklet_of(session: AsyncSession, cheque: ChequeRead) -> tuple[int, str]:
    row = (
        await session.execute(
            text(
                "SELECT b.id, b.number FROM cheque c JOIN booklet b ON b.id = c.booklet_id "
                "WHERE c.serial = :s"
            ),
            {"s": cheque.serial},
        )
    ).one()
    return int(row.id), str(row.number)


# --------------------------------------------------------------------------- booklet burst


async def test_a_booklet_redeemed_at_one_site_within_the_hour_opens_one_alert(
    session: AsyncSession, keyring: Keyring
) -> None:
    scheme = await make_scheme(session, keyring)
    cheques = await issue_cheques(session, scheme, 20)  # two booklets of 10
    burst_site, normal_site = await make_site(session), await make_site(session)
    day = day_of_2024()
    burst = [
        await redeem(session, scheme, burst_site, c, at(day, 10, 8 * n))
        for n, c in enumerate(cheques[:5])
    ]
    # A normal booklet: one cheque a week at the same site.
    for n, c in enumerate(cheques[10:15]):
        await redeem(session, scheme, normal_site, c, at(day - timedelta(days=7 * n), 14))

    first = await run(session, at(day, 12))
    found = await alerts(session, "booklet_burst", site_id=burst_site.id)
    assert len(found) == 1
    booklet_id, number = await booklet_of(session, cheques[0])
    assert found[0].evidence["redemption_ids"] == burst
    assert found[0].evidence["booklet_number"] == number
    assert found[0].programme_id == scheme.id and found[0].status == "open"
    assert number in found[0].summary and "en 32 min" in found[0].summary
    assert found[0].id in first.opened
    assert await alerts(session, "booklet_burst", site_id=normal_site.id) == []

    again = await run(session, at(day, 12, 30))  # idempotent: nothing new
    assert found[0].id not in again.opened
    assert len(await alerts(session, "booklet_burst", site_id=burst_site.id)) == 1


async def test_four_cheques_of_a_booklet_in_an_hour_are_not_a_burst(
    session: AsyncSession, keyring: Keyring
) -> None:
    scheme = await make_scheme(session, keyring)
    cheques = await issue_cheques(session, scheme, 10)
    site = await make_site(session)
    day = day_of_2024()
    for n, c in enumerate(cheques[:4]):
        await redeem(session, scheme, site, c, at(day, 9, 10 * n))
    await redeem(session, scheme, site, cheques[4], at(day, 11, 30))  # the fifth, later
    await run(session, at(day, 18))
    assert await alerts(session, "booklet_burst", site_id=site.id) == []


# --------------------------------------------------------------------------- outside hours


async def declare_hours(session: AsyncSession, site: Organisation, hours: str) -> None:
    """Opening hours on the site's profile, where `site_opening_hours` reads them."""
    await session.execute(
        text("UPDATE organisation SET opening_hours = :h WHERE id = :s"),
        {"s": site.id, "h": hours},
    )


async def test_redemptions_at_night_at_a_site_with_hours_open_an_alert(
    session: AsyncSession, keyring: Keyring
) -> None:
    scheme = await make_scheme(session, keyring)
    cheques = await issue_cheques(session, scheme, 10)
    night, day_site, no_hours = [await make_site(session) for _ in range(3)]
    for site in (night, day_site):
        await declare_hours(session, site, "Mo-Fr 09:00-12:00,14:00-17:00")
    day = day_of_2024()
    late = [
        await redeem(session, scheme, night, cheques[0], at(day, 21, 5)),
        await redeem(session, scheme, night, cheques[1], at(day, 22, 40)),
    ]
    # A normal day: within hours, or just after closing (the grace), and a site without hours.
    await redeem(session, scheme, day_site, cheques[2], at(day, 10))
    await redeem(session, scheme, day_site, cheques[3], at(day, 12, 20))
    await redeem(session, scheme, day_site, cheques[4], at(day, 17, 25))
    await redeem(session, scheme, no_hours, cheques[5], at(day, 23))
    await redeem(session, scheme, no_hours, cheques[6], at(day, 23, 30))

    await run(session, at(day + timedelta(days=1), 8))
    found = await alerts(session, "outside_hours", site_id=night.id)
    assert len(found) == 1
    assert found[0].evidence["redemption_ids"] == late
    assert "21:05, 22:40" in found[0].summary and "Mo-Fr 09:00-12:00,14:00-17:00" in (
        found[0].summary
    )
    assert await alerts(session, "outside_hours", site_id=day_site.id) == []
    assert await alerts(session, "outside_hours", site_id=no_hours.id) == []


async def test_without_any_declared_hours_the_rule_is_silent(
    session: AsyncSession, keyring: Keyring
) -> None:
    scheme = await make_scheme(session, keyring)
    site = await make_site(session)
    assert await anomalies.site_opening_hours(session, [site.id]) == {}  # type: ignore[list-item]
    cheques = await issue_cheques(session, scheme, 3)
    day = day_of_2024()
    for n, c in enumerate(cheques):
        await redeem(session, scheme, site, c, at(day, 2, n))
    await run(session, at(day, 9))
    assert await alerts(session, "outside_hours", site_id=site.id) == []


# --------------------------------------------------------------------------- daily spike


async def test_a_site_far_above_its_own_history_opens_an_alert(
    session: AsyncSession, keyring: Keyring
) -> None:
    scheme = await make_scheme(session, keyring)
    cheques = iter(await issue_cheques(session, scheme, 40))
    spiking, steady = await make_site(session), await make_site(session)
    day = day_of_2024()
    for back in range(1, 8):  # a week of two a day each
        for site in (spiking, steady):
            for hour in (10, 15):
                await redeem(session, scheme, site, next(cheques), at(day - timedelta(back), hour))
    spike = [await redeem(session, scheme, spiking, next(cheques), at(day, 9, n)) for n in range(8)]
    for hour in (10, 15, 16):  # the steady site: three today, a little more than usual
        await redeem(session, scheme, steady, next(cheques), at(day, hour))

    options = {"spike_min_count": 6, "spike_min_peers": 1000}
    # A run scoped to the steady site (as after its offline batch) looks at it alone.
    await anomalies.watch(
        session,
        now=at(day, 20),
        thresholds=Thresholds(**options),
        site_ids=[steady.id],  # type: ignore[list-item]
    )
    assert await alerts(session, "daily_spike", site_id=spiking.id) == []
    await anomalies.watch(
        session,
        now=at(day, 20),
        thresholds=Thresholds(**options),
        site_ids=[spiking.id],  # type: ignore[list-item]
    )
    found = await alerts(session, "daily_spike", site_id=spiking.id)
    assert [a.fingerprint for a in found] == [f"daily_spike:site:{spiking.id}:{day}"]
    assert found[0].evidence["redemption_ids"] == spike
    assert "8 encaissements" in found[0].summary and "4,0 fois sa moyenne" in found[0].summary
    assert await alerts(session, "daily_spike", site_id=steady.id) == []


async def test_a_mediator_far_above_the_other_mediators_opens_an_alert(
    session: AsyncSession, keyring: Keyring
) -> None:
    scheme = await make_scheme(session, keyring)
    cheques = iter(await issue_cheques(session, scheme, 20))
    site = await make_site(session)
    users = [
        await accounts.create_user(
            session,
            UserCreate(
                email=f"m{uuid.uuid4().hex[:10]}@exemple.fr",
                password="motdepasse-solide-42",
                organisation_id=site.id,  # type: ignore[arg-type]
                role=Role.site_mediator,
            ),
        )
        for _ in range(4)
    ]
    day = day_of_2024()
    busy, *others = users
    for n in range(8):
        await redeem(session, scheme, site, next(cheques), at(day, 9, n), user_id=busy.id)
    for user in others:  # peers: two each
        for hour in (10, 14):
            await redeem(session, scheme, site, next(cheques), at(day, hour), user_id=user.id)

    await run(session, at(day, 20), spike_min_count=6, spike_min_history_days=1000)
    found = await alerts(session, "daily_spike", user_id=busy.id)
    assert len(found) == 1 and busy.email in found[0].summary
    assert "médiane des 3 autres médiateurs" in found[0].summary
    for user in others:
        assert await alerts(session, "daily_spike", user_id=user.id) == []


# --------------------------------------------------------------------------- booklet spread


async def test_a_booklet_spread_over_three_communes_in_a_week_opens_an_alert(
    session: AsyncSession, keyring: Keyring
) -> None:
    scheme = await make_scheme(session, keyring)
    cheques = await issue_cheques(session, scheme, 20)
    rennes, vitre, fougeres = (
        await make_site(session, commune_insee="35238"),
        await make_site(session, commune_insee="35360"),
        await make_site(session, commune_insee="35115"),
    )
    day = day_of_2024()
    spread = [
        await redeem(session, scheme, rennes, cheques[0], at(day - timedelta(days=4), 10)),
        await redeem(session, scheme, vitre, cheques[1], at(day - timedelta(days=2), 10)),
        await redeem(session, scheme, fougeres, cheques[2], at(day, 10)),
    ]
    # A normal booklet: two communes (home and work), over the same week.
    await redeem(session, scheme, rennes, cheques[10], at(day - timedelta(days=3), 10))
    await redeem(session, scheme, vitre, cheques[11], at(day, 11))

    await run(session, at(day, 20))
    booklet_id, number = await booklet_of(session, cheques[0])
    found = [a for a in await alerts(session, "booklet_spread") if number in a.summary]
    assert len(found) == 1
    assert found[0].fingerprint == f"booklet_spread:{booklet_id}"
    assert found[0].evidence["redemption_ids"] == spread
    assert found[0].evidence["communes"] == ["35115", "35238", "35360"]
    _, other = await booklet_of(session, cheques[10])
    assert [a for a in await alerts(session, "booklet_spread") if other in a.summary] == []


# --------------------------------------------------------------------------- refused scans


async def test_many_refused_scans_from_one_account_open_an_alert(session: AsyncSession) -> None:
    site = await make_site(session)
    day = day_of_2024()
    forger, clumsy = (
        9_000_000_000 + random.randrange(10**6),
        9_100_000_000 + random.randrange(10**6),
    )
    rows = [(forger, site.id, "invalid_token", at(day, 10, n)) for n in range(10)]
    rows += [(forger, site.id, "cheque_not_found", at(day, 11))]
    rows += [(clumsy, site.id, "serial_check_failed", at(day, 10, n)) for n in range(3)]
    # Real cheques refused for other reasons say nothing of the scanner: not recorded.
    rows += [(clumsy, site.id, "cheque_already_redeemed", at(day, 12, n)) for n in range(20)]
    assert await anomalies.record_refused_scans(session, rows) == 14  # type: ignore[arg-type]

    await run(session, at(day, 20))
    found = await alerts(session, "refused_scans", user_id=forger)
    assert len(found) == 1 and found[0].site_id == site.id
    assert "11 scans refusés" in found[0].summary
    assert "QR code falsifié" in found[0].summary and "chèque inconnu" in found[0].summary
    assert await alerts(session, "refused_scans", user_id=clumsy) == []


# --------------------------------------------------------------------------- a normal day


async def test_a_normal_day_opens_nothing(session: AsyncSession, keyring: Keyring) -> None:
    """Four sites, a week of ordinary activity: one or two cheques per booklet, in hours."""
    scheme = await make_scheme(session, keyring)
    cheques = iter(await issue_cheques(session, scheme, 60))
    sites = [await make_site(session) for _ in range(4)]
    for site in sites:
        await declare_hours(session, site, "Mo-Su 09:00-18:00")  # the week includes a Sunday
    day = day_of_2024()
    for back in range(6, -1, -1):
        for n, site in enumerate(sites):
            for hour in (10 + n, 15):
                await redeem(session, scheme, site, next(cheques), at(day - timedelta(back), hour))
    await run(session, at(day, 19))
    mine = {s.id for s in sites}
    found = [
        a for a in await anomaly_review.list_anomalies(session, status=None) if a.site_id in mine
    ]
    assert found == []


# --------------------------------------------------------------------------- closing alerts


async def test_an_alert_is_justified_with_a_note_or_closed_by_suspending_the_site(
    session: AsyncSession, keyring: Keyring
) -> None:
    scheme = await make_scheme(session, keyring)
    cheques = await issue_cheques(session, scheme, 20)
    one, two = await make_site(session), await make_site(session)
    day = day_of_2024()
    for n in range(5):
        await redeem(session, scheme, one, cheques[n], at(day, 10, n))
        await redeem(session, scheme, two, cheques[10 + n], at(day, 10, n))
    await run(session, at(day, 12))
    (first,) = await alerts(session, "booklet_burst", site_id=one.id)
    (second,) = await alerts(session, "booklet_burst", site_id=two.id)

    with pytest.raises(anomaly_review.NoteRequired):
        await anomaly_review.resolve(
            session, anomaly_id=first.id, note="  ", user_id=None, now=at(day, 13)
        )  # type: ignore[arg-type]
    done = await anomaly_review.resolve(
        session,
        anomaly_id=first.id,
        note="Atelier collectif de 5 séances",  # type: ignore[arg-type]
        user_id=None,
        now=at(day, 13),
    )
    assert done.status == "justified" and done.resolution_note == "Atelier collectif de 5 séances"
    with pytest.raises(anomaly_review.AnomalyClosed):
        await anomaly_review.resolve(
            session, anomaly_id=first.id, note="encore", user_id=None, now=at(day, 13)
        )  # type: ignore[arg-type]

    closed = await anomaly_review.suspend_site(
        session,
        anomaly_id=second.id,
        note="Vérification sur place",
        user_id=None,
        now=at(day, 13),  # type: ignore[arg-type]
    )
    assert closed.status == "site_suspended"
    await session.refresh(two)
    assert two.qualification == Qualification.suspended.value
    # A resolved alert is not opened again by the next run.
    await run(session, at(day, 14))
    assert len(await alerts(session, "booklet_burst", site_id=one.id)) == 1
    assert [
        a.id
        for a in await anomaly_review.list_anomalies(session, status="open")
        if a.site_id in (one.id, two.id)
    ] == []


# --------------------------------------------------------------------------- over HTTP


async def test_the_api_lists_alerts_by_role_and_resolves_them(
    session: AsyncSession, client: Any, app: Any
) -> None:
    scheme = await make_scheme(session, app.state.keyring)
    other = await make_scheme(session, app.state.keyring)
    cheques = await issue_cheques(session, scheme, 10)
    site = await make_site(session)
    day = day_of_2024()
    for n in range(5):
        await redeem(session, scheme, site, cheques[n], at(day, 10, n))
    await run(session, at(day, 12))
    (alert,) = await alerts(session, "booklet_burst", site_id=site.id)
    operator = await make_actor(session, app, OrganisationKind.operator)
    financer = await make_actor(session, app, OrganisationKind.financer, org=scheme.financers[1])
    stranger = await make_actor(session, app, OrganisationKind.financer, org=other.financers[1])
    mediator = await make_actor(session, app, OrganisationKind.site, org=site)
    await session.commit()

    answer = await client.get("/api/v1/anomalies?status=open", headers=operator.headers)
    assert answer.status_code == 200
    mine = [a for a in answer.json() if a["id"] == alert.id]
    assert mine == [
        {
            "id": alert.id,
            "rule": "booklet_burst",
            "site_id": site.id,
            "programme_id": scheme.id,
            "opened_at": mine[0]["opened_at"],
            "status": "open",
            "summary": alert.summary,
            "evidence": {
                "redemption_ids": alert.evidence["redemption_ids"],
                "booklet_number": alert.evidence["booklet_number"],
            },
            "resolution_note": None,
            "resolved_at": None,
        }
    ]
    seen = await client.get("/api/v1/anomalies", headers=financer.headers)
    assert alert.id in [a["id"] for a in seen.json()]
    assert {a["programme_id"] for a in seen.json()} <= {scheme.id}
    unseen = await client.get("/api/v1/anomalies", headers=stranger.headers)
    assert alert.id not in [a["id"] for a in unseen.json()]
    refused = await client.get("/api/v1/anomalies", headers=mediator.headers)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    assert (
        await client.get("/api/v1/anomalies?status=bidon", headers=operator.headers)
    ).status_code == 422

    url = f"/api/v1/anomalies/{alert.id}/resolve"
    assert (
        await client.post(url, json={"note": "ok"}, headers=financer.headers)
    ).status_code == 403
    empty = await client.post(url, json={"note": ""}, headers=operator.headers)
    assert empty.status_code == 422
    done = await client.post(url, json={"note": "Atelier de groupe"}, headers=operator.headers)
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "justified"
    assert done.json()["resolution_note"] == "Atelier de groupe"
    again = await client.post(url, json={"note": "encore"}, headers=operator.headers)
    assert again.status_code == 409 and again.json()["error"]["code"] == "anomaly_closed"
    gone = await client.post(
        "/api/v1/anomalies/999999999/resolve", json={"note": "x"}, headers=operator.headers
    )
    assert gone.status_code == 404
    listed = await client.get("/api/v1/anomalies?status=justified", headers=operator.headers)
    assert alert.id in [a["id"] for a in listed.json()]


async def test_a_forged_code_scanned_through_the_api_is_recorded_after_the_answer(
    session: AsyncSession, client: Any, app: Any, sessionmaker: Any
) -> None:
    from api.anomaly_watch import side_jobs

    site = await make_site(session)
    mediator = await make_actor(session, app, OrganisationKind.site, org=site)
    await session.commit()
    forged = "PN1:" + "A" * 136
    answer = await client.post(
        "/api/v1/redemptions",
        json={"code": forged, "service": "realiser_demarche"},
        headers={**mediator.headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert answer.status_code == 422 and answer.json()["error"]["code"] == "invalid_token"
    await side_jobs(app).flush()  # what the background task does half a second later
    async with sessionmaker() as other:
        rows = (
            await other.execute(
                text("SELECT site_id, error_code FROM refused_scan WHERE user_id = :u"),
                {"u": mediator.id},
            )
        ).all()
        await other.execute(text("DELETE FROM refused_scan WHERE user_id = :u"), {"u": mediator.id})
        await other.commit()
    assert [(r.site_id, r.error_code) for r in rows] == [(site.id, "invalid_token")]
