"""The dashboard figures of a programme: cheques by stage, and breakdowns by démarche family,
need level and commune, counted from the cheques and live redemptions."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from kit.clock import utcnow
from pass_ import redemption, reporting
from pass_.enums import DemarcheFamily, OrganisationKind, Service
from pass_.tokens import Keyring
from tests.factories import make_org
from tests.pass_.redemption_factories import make_scene


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

    d = await reporting.programme_dashboard(session, programme_id=scene.programme_id)

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
    d = await reporting.programme_dashboard(session, programme_id=scene.programme_id)
    assert d.printed == reporting.Figure(0, 0) and d.by_demarche == [] and d.by_commune == []
