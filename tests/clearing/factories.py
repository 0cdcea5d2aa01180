"""Builders for clearing tests: programmes with chosen financers, cheques issued and redeemed
through the real pass_ services at chosen instants in 2024, and cutoffs unique to each test.

The scheme's year is 2024 (cheques valid all year, redeemable until 31 January 2025), so every
cutoff is in the past. Each test gets its own cutoffs: a batch is unique per cutoff, and tests
that commit (Stripe webhooks through a real server) leave their batches behind for the run.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from kit.clock import PARIS, UTC
from pass_ import issuance, programmes, redemption
from pass_.enums import DemarcheFamily, FinancerRole, OrganisationKind, Role, Service
from pass_.models import Organisation, Programme
from pass_.programmes import Actor
from pass_.redemption_schemas import RedemptionRead
from pass_.schemas import ChequeRead, FinancerIn, IssuerIn, ProgrammeCreate
from pass_.tokens import Keyring
from tests.factories import make_org
from tests.pass_.factories import make_beneficiary

YEAR = 2024
PROGRAMME_CREATED_ON = date(YEAR, 1, 1)
ISSUED_AT = datetime(YEAR, 1, 2, 9, 0, tzinfo=PARIS).astimezone(UTC)
REDEEM_UNTIL = date(YEAR + 1, 1, 31)
_minutes = itertools.count(random.randrange(0, 20_000))
_names = itertools.count(random.randrange(10**5, 10**6))


def paris(year: int, month: int, day: int, hour: int = 10, minute: int = 0) -> datetime:
    """An instant given in Paris time, as aware UTC."""
    return datetime(year, month, day, hour, minute, tzinfo=PARIS).astimezone(UTC)


def unique_cutoff(month: int = 2) -> datetime:
    """A cutoff in `month` of 2024 no other test of this run uses (from the 1st, 00:00 Paris,
    plus a few minutes): redemptions made before that month fall before it."""
    start = datetime.combine(date(YEAR, month, 1), time(0, 0), tzinfo=PARIS)
    return (start + timedelta(minutes=next(_minutes) % 20_000)).astimezone(UTC)


@dataclass(frozen=True)
class FinancerSpec:
    role: FinancerRole
    commitment_cents: int
    weight: int = 1
    families: tuple[DemarcheFamily, ...] = ()
    name: str | None = None


@dataclass
class Scheme:
    """A programme, its financers in declared order, its issuer, and the cheques issued."""

    programme: Programme
    financers: list[Organisation]
    issuer: Organisation
    keyring: Keyring
    cheques: list[ChequeRead] = field(default_factory=list)

    @property
    def id(self) -> int:
        return int(self.programme.id)  # type: ignore[arg-type]

    def financer_id(self, index: int) -> int:
        return int(self.financers[index].id)  # type: ignore[arg-type]


DEFAULT_FINANCERS = (
    FinancerSpec(FinancerRole.state, 500_000, name="État — ANCT (essai clearing)"),
    FinancerSpec(FinancerRole.local, 500_000, name="Département (essai clearing)"),
)


async def make_scheme(
    session: AsyncSession,
    keyring: Keyring,
    *,
    financers: Sequence[FinancerSpec] = DEFAULT_FINANCERS,
    face_value_cents: int = 1000,
    state_share_bp: int = 5000,
    financer_fee_bp: int = 0,
    site_commission_bp: int = 0,
    territory: Sequence[str] = ("35",),
    quota: int = 100_000,
    redeem_until: date = REDEEM_UNTIL,
) -> Scheme:
    """A programme of 2024 with `financers` (new organisations, in this order)."""
    orgs = [
        await make_org(session, OrganisationKind.financer,
                       name=spec.name or f"Financeur {next(_names)}")
        for spec in financers
    ]
    issuer = await make_org(session, OrganisationKind.issuer)
    data = ProgrammeCreate(
        name=f"Programme de compensation {next(_names)}",
        territory=list(territory),
        face_value_cents=face_value_cents,
        booklet_sizes=[1, 5, 10],
        valid_from=date(YEAR, 1, 1),
        valid_until=date(YEAR, 12, 31),
        redeem_until=redeem_until,
        state_share_bp=state_share_bp,
        financer_fee_bp=financer_fee_bp,
        site_commission_bp=site_commission_bp,
        financers=[
            FinancerIn(organisation_id=org.id, role=spec.role,  # type: ignore[arg-type]
                       commitment_cents=spec.commitment_cents, weight=spec.weight,
                       demarche_families=list(spec.families))
            for org, spec in zip(orgs, financers, strict=True)
        ],
        issuers=[IssuerIn(organisation_id=issuer.id, quota_cheques=quota)],  # type: ignore[arg-type]
    )
    programme = await programmes.create_programme(session, data, today=PROGRAMME_CREATED_ON)
    return Scheme(programme=programme, financers=orgs, issuer=issuer, keyring=keyring)


async def issue_cheques(session: AsyncSession, scheme: Scheme, count: int, *,
                        now: datetime = ISSUED_AT) -> list[ChequeRead]:
    """`count` more active cheques, in booklets of 10 then of 1, to new beneficiaries."""
    agent = Actor(user_id=None, organisation_id=scheme.issuer.id, role=Role.issuer_agent)  # type: ignore[arg-type]
    issued: list[ChequeRead] = []
    for size in [10] * (count // 10) + [1] * (count % 10):
        beneficiary = await make_beneficiary(session, scheme.issuer)
        booklet = await issuance.issue_booklet(
            session, keyring=scheme.keyring, actor=agent, programme_id=scheme.id,
            beneficiary_id=beneficiary.id, size=size, now=now)  # type: ignore[arg-type]
        issued.extend(booklet.cheques)
    scheme.cheques.extend(issued)
    return issued


async def make_site(session: AsyncSession, *, commune_insee: str = "35238",
                    iban: str | None = None, name: str | None = None) -> Organisation:
    """A qualified site of the territory (a valid IBAN unless told)."""
    extra = {"iban": iban} if iban is not None else {}
    return await make_org(session, OrganisationKind.site, commune_insee=commune_insee,
                          name=name or f"Médiathèque {next(_names)}", **extra)  # type: ignore[arg-type]


async def redeem(session: AsyncSession, scheme: Scheme, site: Organisation, cheque: ChequeRead,
                 *, at: datetime, service: Service = Service.realiser_demarche,
                 family: DemarcheFamily | None = None) -> RedemptionRead:
    """Redeem `cheque` at `site` at the instant `at`, through the real redemption service."""
    return await redemption.redeem_cheque(
        session, keyring=scheme.keyring, site_id=site.id, user_id=None,  # type: ignore[arg-type]
        code=cheque.serial, service=service, demarche_family=family, now=at)
