"""Programmes: the issuing capacity formula to the cent, every declaration rule refused with its
code and a French message (and nothing stored), commitments in the ledger, live figures, the
demo programme."""

from __future__ import annotations

import math
from datetime import date
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kit.clock import paris_today
from ledger import service as ledger
from pass_ import programmes
from pass_.enums import DemarcheFamily, FinancerRole, OrganisationKind
from pass_.models import Organisation, Programme, ProgrammeFinancer, ProgrammeIssuer
from pass_.programmes import ProgrammeRuleBroken, issuing_capacity
from pass_.schemas import FinancerIn, IssuerIn, ProgrammeCreate
from tests.factories import make_org
from tests.pass_.factories import make_programme, programme_data

# --------------------------------------------------------------------------- capacity


def test_capacity_of_a_half_state_programme_is_limited_by_the_smaller_half() -> None:
    # 50 % State: 50,000 € from the State and 30,000 € from the others allow 60,000 €.
    assert (
        issuing_capacity(
            state_commitment_cents=5_000_000,
            other_commitments_cents=3_000_000,
            state_share_bp=5000,
        )
        == 6_000_000
    )
    # …and with 80,000 € from the others, the State's half is the limit: 100,000 €.
    assert (
        issuing_capacity(
            state_commitment_cents=5_000_000,
            other_commitments_cents=8_000_000,
            state_share_bp=5000,
        )
        == 10_000_000
    )


def test_with_no_state_share_the_state_term_drops_out() -> None:
    assert (
        issuing_capacity(
            state_commitment_cents=0, other_commitments_cents=123_456, state_share_bp=0
        )
        == 123_456
    )


def test_capacity_is_floored_to_the_cent() -> None:
    # 1 cent from the State at 30 % allows 3.33… cents: 3.
    assert (
        issuing_capacity(state_commitment_cents=1, other_commitments_cents=100, state_share_bp=3000)
        == 3
    )


@given(
    state=st.integers(0, 10**12),
    others=st.integers(0, 10**12),
    share=st.integers(0, 5000),
)
def test_capacity_matches_the_exact_rational_formula(state: int, others: int, share: int) -> None:
    s = Fraction(share, 10_000)
    terms = [Fraction(state + others), others / (1 - s)]
    if share:
        terms.append(state / s)
    expected = math.floor(min(terms))
    capacity = issuing_capacity(
        state_commitment_cents=state, other_commitments_cents=others, state_share_bp=share
    )
    assert capacity == expected
    # What the capacity allows is always financed: the State's share and the rest fit.
    assert capacity * s <= state or share == 0
    assert capacity * (1 - s) <= others


# --------------------------------------------------------------------------- creation


async def test_creating_a_programme_stores_it_and_posts_each_commitment(
    session: AsyncSession,
) -> None:
    funded = await make_programme(session, state_cents=400_000, local_cents=600_000)
    programme = funded.programme
    assert programme.issuing_capacity_cents == 800_000  # the State's 4,000 € at 50 %
    assert programme.issued_value_cents == 0
    assert await ledger.balance(session, f"programme:{programme.id}:available") == 1_000_000
    assert await ledger.balance(session, f"financer:{funded.state.id}:commitment") == -400_000
    assert await ledger.balance(session, f"financer:{funded.local.id}:commitment") == -600_000
    entry = await ledger.get_entry(session, f"commit:{programme.id}:{funded.local.id}")
    assert entry is not None and entry.kind == "commitment"


async def test_dates_default_to_the_year_and_january_after(session: AsyncSession) -> None:
    state = await make_org(session, OrganisationKind.financer)
    local = await make_org(session, OrganisationKind.financer)
    issuer = await make_org(session, OrganisationKind.issuer)
    data = programme_data(state=state, local=local, issuers=[issuer]).model_copy(
        update={"valid_from": date(2031, 3, 1), "valid_until": None, "redeem_until": None}
    )
    programme = await programmes.create_programme(session, data, today=date(2031, 2, 1))
    assert programme.valid_until == date(2031, 12, 31)
    assert programme.redeem_until == date(2032, 1, 31)


async def _refused(session: AsyncSession, data: ProgrammeCreate, today: date | None = None) -> str:
    """Create `data`, expect a refusal; check nothing was stored; return the error's code."""
    before = [
        await session.scalar(select(func.count()).select_from(t))
        for t in (Programme, ProgrammeFinancer, ProgrammeIssuer)
    ]
    with pytest.raises(ProgrammeRuleBroken) as refused:
        async with session.begin_nested():
            await programmes.create_programme(session, data, today=today or paris_today())
    after = [
        await session.scalar(select(func.count()).select_from(t))
        for t in (Programme, ProgrammeFinancer, ProgrammeIssuer)
    ]
    assert after == before
    error = refused.value
    assert error.message[0].isupper() and error.message.endswith(".")
    return error.code


@pytest.fixture
async def orgs(session: AsyncSession) -> dict[str, Organisation]:
    return {
        "state": await make_org(session, OrganisationKind.financer),
        "local": await make_org(session, OrganisationKind.financer),
        "caf": await make_org(session, OrganisationKind.financer),
        "issuer": await make_org(session, OrganisationKind.issuer),
        "site": await make_org(session, OrganisationKind.site),
    }


def _data(orgs: dict[str, Organisation], **options: object) -> ProgrammeCreate:
    return programme_data(
        state=orgs["state"],
        local=orgs["local"],
        issuers=[orgs["issuer"]],
        **options,  # type: ignore[arg-type]
    )


def _with(data: ProgrammeCreate, **update: object) -> ProgrammeCreate:
    return data.model_copy(update=update)


async def test_each_programme_rule_is_refused_with_its_code(
    session: AsyncSession, orgs: dict[str, Organisation]
) -> None:
    good = _data(orgs)
    state = good.financers[0]
    local = good.financers[1]
    caf = FinancerIn(
        organisation_id=orgs["caf"].id,  # type: ignore[arg-type]
        role=FinancerRole.operator,
        commitment_cents=100_000,
        demarche_families=[DemarcheFamily.caf],
    )
    issuer = good.issuers[0]
    cases: list[tuple[str, ProgrammeCreate]] = [
        ("invalid_state_share", _with(good, state_share_bp=5001)),
        ("invalid_state_share", _with(good, state_share_bp=-1)),
        ("invalid_dates", _with(good, valid_from=date(2031, 6, 1), valid_until=date(2031, 5, 31))),
        (
            "invalid_dates",
            _with(good, valid_until=date(2031, 12, 31), redeem_until=date(2031, 12, 30)),
        ),
        (
            "invalid_dates",
            _with(
                good,
                valid_from=date(2020, 1, 1),
                valid_until=date(2020, 12, 31),
                redeem_until=date(2021, 1, 31),
            ),
        ),
        ("invalid_face_value", _with(good, face_value_cents=0)),
        ("invalid_booklet_sizes", _with(good, booklet_sizes=[])),
        ("invalid_booklet_sizes", _with(good, booklet_sizes=[5, 5])),
        ("invalid_booklet_sizes", _with(good, booklet_sizes=[0])),
        ("invalid_booklet_sizes", _with(good, booklet_sizes=[51])),
        ("invalid_fee", _with(good, financer_fee_bp=10_001)),
        ("invalid_fee", _with(good, site_commission_bp=-5)),
        ("invalid_territory", _with(good, territory=[])),
        ("invalid_territory", _with(good, territory=["99"])),
        ("invalid_territory", _with(good, territory=["ABCDE"])),
        ("financer_required", _with(good, financers=[])),
        ("duplicate_financer", _with(good, financers=[state, local, local])),
        (
            "several_state_financers",
            _with(good, financers=[state, local, caf.model_copy(update={"role": "state"})]),
        ),
        ("state_financer_required", _with(good, financers=[local])),
        ("local_financer_required", _with(good, financers=[state])),
        (
            "invalid_commitment",
            _with(good, financers=[state, local.model_copy(update={"commitment_cents": -1})]),
        ),
        ("invalid_weight", _with(good, financers=[state, local.model_copy(update={"weight": 0})])),
        (
            "families_for_operators_only",
            _with(
                good,
                financers=[
                    state,
                    local.model_copy(update={"demarche_families": [DemarcheFamily.caf]}),
                ],
            ),
        ),
        (
            "invalid_demarche_families",
            _with(
                good,
                financers=[
                    state,
                    local,
                    caf.model_copy(
                        update={"demarche_families": [DemarcheFamily.caf, DemarcheFamily.caf]}
                    ),
                ],
            ),
        ),
        ("issuer_required", _with(good, issuers=[])),
        ("duplicate_issuer", _with(good, issuers=[issuer, issuer])),
        ("invalid_quota", _with(good, issuers=[issuer.model_copy(update={"quota_cheques": -1})])),
        (
            "insufficient_commitments",
            _with(
                good,
                financers=[
                    state.model_copy(update={"commitment_cents": 100}),
                    local.model_copy(update={"commitment_cents": 100}),
                ],
            ),
        ),
        (
            "invalid_financer",
            _with(
                good,
                financers=[
                    state,
                    local.model_copy(update={"organisation_id": orgs["issuer"].id}),
                ],
            ),
        ),
        (
            "invalid_financer",
            _with(good, financers=[state, local.model_copy(update={"organisation_id": 10**15})]),
        ),
        (
            "invalid_issuer",
            _with(good, issuers=[IssuerIn(organisation_id=orgs["site"].id, quota_cheques=10)]),  # type: ignore[arg-type]
        ),
    ]
    for expected, data in cases:
        code = await _refused(session, data)
        assert code == expected, (expected, data)
    # The good declaration itself is accepted: the refusals above came from the one change.
    programme = await programmes.create_programme(session, good, today=paris_today())
    assert programme.id is not None


async def test_a_programme_may_start_later_but_not_end_before_today(
    session: AsyncSession, orgs: dict[str, Organisation]
) -> None:
    later = _data(
        orgs,
        valid_from=date(2040, 1, 1),
        valid_until=date(2040, 12, 31),
        redeem_until=date(2041, 1, 31),
    )
    programme = await programmes.create_programme(session, later, today=date(2039, 6, 1))
    assert programme.valid_from == date(2040, 1, 1)
    code = await _refused(session, _with(later, name="Trop tard"), today=date(2041, 1, 1))
    assert code == "invalid_dates"


async def test_operator_financers_carry_their_demarche_families(
    session: AsyncSession, orgs: dict[str, Organisation]
) -> None:
    data = _data(orgs)
    caf = FinancerIn(
        organisation_id=orgs["caf"].id,  # type: ignore[arg-type]
        role=FinancerRole.operator,
        commitment_cents=200_000,
        weight=2,
        demarche_families=[DemarcheFamily.caf, DemarcheFamily.logement],
    )
    programme = await programmes.create_programme(
        session, _with(data, financers=[*data.financers, caf]), today=paris_today()
    )
    detail = await programmes.programme_detail(session, programme)
    assert [f.role for f in detail.financers] == ["state", "local", "operator"]
    assert detail.financers[2].demarche_families == ["caf", "logement"]
    assert detail.financers[2].weight == 2
    # 5,000 € of State at 50 % against 7,000 € of others: the State's half limits.
    assert detail.issuing_capacity_cents == 1_000_000


# --------------------------------------------------------------------------- reading


async def test_the_detail_starts_with_full_capacity_and_no_quota_used(
    session: AsyncSession,
) -> None:
    funded = await make_programme(session, quota=300)
    detail = await programmes.programme_detail(session, funded.programme)
    assert detail.figures.remaining_capacity_cents == detail.issuing_capacity_cents == 1_000_000
    assert detail.figures.active_cents == detail.figures.redeemed_cents == 0
    assert [(i.quota_cheques, i.issued_cheques, i.remaining_cheques) for i in detail.issuers] == [
        (300, 0, 300)
    ]


async def test_each_role_sees_only_the_programmes_it_takes_part_in(
    session: AsyncSession,
) -> None:
    funded = await make_programme(session, territory=["35"])
    other = await make_programme(session, territory=["2A"])
    site_35 = await make_org(session, OrganisationKind.site, commune_insee="35001")
    site_29 = await make_org(session, OrganisationKind.site, commune_insee="29019")
    stranger = await make_org(session, OrganisationKind.issuer)

    def viewer(org: Organisation, role: str) -> programmes.Actor:
        return programmes.Actor(None, org.id, programmes.Role(role))  # type: ignore[arg-type]

    async def ids(v: programmes.Actor) -> set[int]:
        return {p.id for p in await programmes.list_programmes(session, v)}  # type: ignore[misc]

    mine = {funded.id, other.id}
    assert funded.id in await ids(viewer(funded.issuers[0], "issuer_agent"))
    assert other.id not in await ids(viewer(funded.issuers[0], "issuer_agent"))
    assert funded.id in await ids(viewer(funded.local, "financer"))
    assert other.id not in await ids(viewer(funded.local, "financer"))
    assert funded.id in await ids(viewer(site_35, "site_mediator"))
    assert not mine & await ids(viewer(site_29, "site_mediator"))
    assert not mine & await ids(viewer(stranger, "issuer_agent"))
    with pytest.raises(programmes.NotFound):
        await programmes.visible_programme(session, funded.id, viewer(stranger, "issuer_agent"))
    seen = await programmes.visible_programme(
        session, funded.id, viewer(funded.issuers[0], "issuer_agent")
    )
    assert seen.id == funded.id


# --------------------------------------------------------------------------- demo


async def test_the_demo_programme_is_created_once_with_the_agreed_terms(
    session: AsyncSession,
) -> None:
    from api.seed import DEMO_ORGANISATIONS, _ensure_org, luhn_complete

    orgs = {}
    for key, kind, name, prefix, commune, extra in DEMO_ORGANISATIONS:
        orgs[key] = await _ensure_org(session, kind, name, luhn_complete(prefix), commune, extra)
    first = await programmes.ensure_demo_programme(session, orgs)
    again = await programmes.ensure_demo_programme(session, orgs)
    assert again.id == first.id
    count = await session.scalar(
        select(func.count())
        .select_from(Programme)
        .where(Programme.name == "Pass numérique AdmiVille 2026")
    )
    assert count == 1
    year = paris_today().year
    assert (first.valid_from, first.valid_until, first.redeem_until) == (
        date(year, 1, 1),
        date(year, 12, 31),
        date(year + 1, 1, 31),
    )
    assert first.territory == ["35"] and first.booklet_sizes == [5, 10]
    assert first.face_value_cents == 1000 and first.state_share_bp == 5000
    detail = await programmes.programme_detail(session, first)
    assert [
        (f.name, f.role, f.commitment_cents, f.demarche_families) for f in detail.financers
    ] == [
        (orgs["etat"].name, "state", 5_000_000, []),
        (orgs["departement"].name, "local", 3_000_000, []),
        (orgs["caf"].name, "operator", 2_000_000, ["caf"]),
    ]
    assert [(i.name, i.quota_cheques) for i in detail.issuers] == [(orgs["ccas"].name, 2000)]
    assert detail.issuing_capacity_cents == 10_000_000


async def test_a_commune_is_in_a_territory_by_departement_or_by_its_own_code(
    session: AsyncSession,
) -> None:
    """The one territory rule (`pass_in_territory`, the redemption's own) as every reader
    gets it."""

    async def inside(commune: str, territory: list[str]) -> bool:
        return bool(await programmes.communes_in_territory(session, [commune], territory))

    assert await inside("35238", ["35"])
    assert await inside("35238", ["22", "35238"])
    assert await inside("2A004", ["2A"])
    assert await inside("97411", ["974"])
    assert not await inside("35238", ["2A", "35001"])
    assert not await inside("97105", ["974"])
    assert not await inside("2B033", ["2A"])
    assert not await inside("35238", [])
    assert not await inside("3523", ["35238"])  # a code is a commune's, not a prefix of one
    assert await programmes.communes_in_territory(
        session, ["35238", "22001", "35001", "2A004"], ["35", "2A004"]) == {
        "35238", "35001", "2A004"}
