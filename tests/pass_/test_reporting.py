"""The dashboard figures of a programme: cheques by stage, and breakdowns by démarche family,
need level and commune, summed from the sealed journal into the rollup, and the audit's
recount of it."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from kit.clock import utcnow
from ledger.sealer import seal_pending
from pass_ import redemption, reporting
from pass_.enums import DemarcheFamily, OrganisationKind, Service
from pass_.tokens import Keyring
from tests.factories import make_org
from tests.pass_.redemption_factories import make_scene


async def count(session: AsyncSession) -> None:
    """What the background jobs do: seal the journal, then count it into the rollup."""
    while await seal_pending(session, limit=100_000):
        pass
    while await reporting.refresh_rollup(session):
        pass


@pytest.fixture(scope="module")
def keyring(tmp_path_factory: pytest.TempPathFactory) -> Keyring:
    return Keyring.load_or_create(tmp_path_factory.mktemp("keys"))


async def test_dashboard_counts_stages_and_breaks_redemptions_down(
    session: AsyncSession, keyring: Keyring
) -> None:
    scene = await make_scene(session, keyring, cheques=10)
    rennes = await make_org(session, OrganisationKind.site, commune_insee="35238")
    acigne = await make_org(session, OrganisationKind.site, commune_insee="35001")
    now = utcnow()
    plan = [
        (rennes, DemarcheFamily.caf),
        (rennes, DemarcheFamily.caf),
        (acigne, None),
    ]
    redeemed = []
    for (site, family), cheque in zip(plan, scene.cheques, strict=False):
        redeemed.append(
            await redemption.redeem_cheque(
                session,
                keyring=keyring,
                site_id=site.id,  # type: ignore[arg-type]
                user_id=None,
                code=cheque.serial,
                service=Service.realiser_demarche,
                demarche_family=family,
                now=now,
            )
        )
    # A reversed redemption counts nowhere.
    await redemption.reverse_redemption(
        session,
        site_id=acigne.id,
        redemption_id=redeemed[2].id,
        now=now,  # type: ignore[arg-type]
    )

    while await seal_pending(session, limit=100_000):
        pass
    before = await reporting.programme_dashboard(session, programme_id=scene.programme_id)
    await count(session)
    d = await reporting.programme_dashboard(session, programme_id=scene.programme_id)

    # Until the rollup has counted the sealed entries, the page says how many wait.
    assert before.redeemed.count == 0 and before.pending > 0
    assert d.pending == 0 and d.as_of is not None
    assert (d.printed.count, d.printed.value_cents) == (10, 10_000)
    assert (d.handed_out.count, d.handed_out.value_cents) == (10, 10_000)
    assert (d.redeemed.count, d.redeemed.value_cents) == (2, 2_000)
    assert (d.expired.count, d.cancelled.count) == (0, 0)
    assert [(b.key, b.redeemed.count, b.redeemed.value_cents) for b in d.by_demarche] == [
        ("caf", 2, 2_000)
    ]
    assert [(b.key, b.redeemed.value_cents) for b in d.by_commune] == [("35238", 2_000)]
    # The factory's beneficiaries are all of need level 2.
    assert [(b.key, b.handed_out.count, b.redeemed.count) for b in d.by_need_level] == [
        ("2", 10, 2)
    ]


async def test_an_empty_programme_has_zero_figures(session: AsyncSession, keyring: Keyring) -> None:
    scene = await make_scene(session, keyring, cheques=0)
    await count(session)
    d = await reporting.programme_dashboard(session, programme_id=scene.programme_id)
    assert d.printed == reporting.Figure(0, 0) and d.by_demarche == [] and d.by_commune == []


async def test_the_audit_recounts_the_rollup_and_names_a_figure_that_differs(
    session: AsyncSession, keyring: Keyring
) -> None:
    scene = await make_scene(session, keyring, cheques=3)
    site = await make_org(session, OrganisationKind.site, commune_insee="35238")
    await redemption.redeem_cheque(
        session, keyring=keyring, site_id=site.id, user_id=None,  # type: ignore[arg-type]
        code=scene.cheques[0].serial, service=Service.realiser_demarche,
        demarche_family=DemarcheFamily.impots, now=utcnow(),
    )
    await count(session)
    mine = [d for d in await reporting.audit_rollup(session)
            if d.details.get("programme_id") == scene.programme_id]
    assert mine == []
    await session.execute(
        text("UPDATE figure_rollup SET cheques = cheques + 1 WHERE programme_id = :p "
             "AND dimension = 'demarche' AND key = 'impots'"), {"p": scene.programme_id})
    mine = [d for d in await reporting.audit_rollup(session)
            if d.details.get("programme_id") == scene.programme_id]
    assert [(d.kind, d.details["key"], d.details["stored"], d.details["recounted"])
            for d in mine] == [("rollup_mismatch", "impots", [2, 1_000], [1, 1_000])]


async def test_the_commune_breakdown_keeps_the_first_communes_and_sums_the_rest(
    session: AsyncSession, keyring: Keyring
) -> None:
    scene = await make_scene(session, keyring, cheques=4)
    for cheque, commune in zip(scene.cheques, ["35001", "35002", "35003", "35003"], strict=True):
        site = await make_org(session, OrganisationKind.site, commune_insee=commune)
        await redemption.redeem_cheque(
            session, keyring=keyring, site_id=site.id, user_id=None,  # type: ignore[arg-type]
            code=cheque.serial, service=Service.realiser_demarche, demarche_family=None,
            now=utcnow(),
        )
    await count(session)
    d = await reporting.programme_dashboard(session, programme_id=scene.programme_id,
                                            top_communes=1)
    assert [(b.key, b.redeemed.count) for b in d.by_commune] == [("35003", 2)]
    assert d.other_communes == reporting.Breakdown(key="2", redeemed=reporting.Figure(2, 2_000))
