"""Builders for issuance tests: programmes with their financers and issuers, beneficiaries,
and the `Actor` of a test user. They go through the real service functions."""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from sqlalchemy.ext.asyncio import AsyncSession

from kit.clock import paris_today
from pass_ import beneficiaries, programmes
from pass_.enums import FinancerRole, NeedLevel, OrganisationKind, Role
from pass_.models import Beneficiary, Organisation, Programme
from pass_.programmes import Actor
from pass_.schemas import BeneficiaryCreate, FinancerIn, IssuerIn, ProgrammeCreate
from tests.factories import make_org

_counter = itertools.count(random.randrange(10**6, 10**7))


@dataclass
class Funded:
    """A programme with the organisations that finance it and issue for it."""

    programme: Programme
    state: Organisation
    local: Organisation
    issuers: list[Organisation]

    @property
    def id(self) -> int:
        return int(self.programme.id)  # type: ignore[arg-type]


def programme_data(
    *,
    state: Organisation,
    local: Organisation,
    issuers: Sequence[Organisation],
    state_cents: int = 500_000,
    local_cents: int = 500_000,
    state_share_bp: int = 5000,
    quota: int = 1000,
    face_value_cents: int = 1000,
    booklet_sizes: Sequence[int] = (5, 10),
    territory: Sequence[str] = ("35",),
    valid_from: date | None = None,
    valid_until: date | None = None,
    redeem_until: date | None = None,
    **extra: object,
) -> ProgrammeCreate:
    today = paris_today()
    return ProgrammeCreate(
        name=f"Programme d'essai {next(_counter)}",
        territory=list(territory),
        face_value_cents=face_value_cents,
        booklet_sizes=list(booklet_sizes),
        valid_from=valid_from or date(today.year, 1, 1),
        valid_until=valid_until or date(today.year, 12, 31),
        redeem_until=redeem_until or date(today.year + 1, 1, 31),
        state_share_bp=state_share_bp,
        financers=[
            FinancerIn(
                organisation_id=state.id,  # type: ignore[arg-type]
                role=FinancerRole.state,
                commitment_cents=state_cents,
            ),
            FinancerIn(
                organisation_id=local.id,  # type: ignore[arg-type]
                role=FinancerRole.local,
                commitment_cents=local_cents,
            ),
        ],
        issuers=[
            IssuerIn(organisation_id=i.id, quota_cheques=quota)  # type: ignore[arg-type]
            for i in issuers
        ],
        **extra,  # type: ignore[arg-type]
    )


async def make_programme(
    session: AsyncSession,
    *,
    issuers: Sequence[Organisation] | None = None,
    today: date | None = None,
    **options: object,
) -> Funded:
    """A programme financed half by the State, half by a département (5,000 € each unless
    told), issued by `issuers` (a new issuer if none)."""
    state = await make_org(session, OrganisationKind.financer, name="État — ANCT (essai)")
    local = await make_org(session, OrganisationKind.financer, name="Département (essai)")
    issuer_list = list(issuers) if issuers else [await make_org(session, OrganisationKind.issuer)]
    data = programme_data(state=state, local=local, issuers=issuer_list, **options)  # type: ignore[arg-type]
    programme = await programmes.create_programme(session, data, today=today or paris_today())
    return Funded(programme=programme, state=state, local=local, issuers=issuer_list)


async def make_beneficiary(
    session: AsyncSession, issuer: Organisation, *, reference: str | None = None
) -> Beneficiary:
    return await beneficiaries.create_beneficiary(
        session,
        issuer_id=issuer.id,  # type: ignore[arg-type]
        data=BeneficiaryCreate(
            reference=reference or f"BEN-{next(_counter)}", need_level=NeedLevel.inclusion
        ),
    )


def actor_of(user: object) -> Actor:
    """The domain's view of a test user (`tests.factories.Actor.user`)."""
    return Actor(
        user_id=user.id,  # type: ignore[attr-defined]
        organisation_id=user.organisation_id,  # type: ignore[attr-defined]
        role=Role(user.role),  # type: ignore[attr-defined]
    )
