"""Builders for redemption tests: a funded programme, active cheques issued through the real
issuance service, and sites with their mediators."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from kit.clock import paris_day, utcnow
from pass_ import issuance
from pass_.enums import OrganisationKind, Role
from pass_.models import Organisation
from pass_.programmes import Actor
from pass_.schemas import ChequeRead
from pass_.tokens import Keyring
from tests.factories import Actor as UserActor
from tests.factories import make_actor, make_org
from tests.pass_.factories import Funded, make_beneficiary, make_programme

BOOKLET = 10


@dataclass
class Scene:
    """A programme on a territory, its issuer, and the cheques issued so far."""

    funded: Funded
    issuer: Organisation
    keyring: Keyring
    cheques: list[ChequeRead] = field(default_factory=list)

    @property
    def programme_id(self) -> int:
        return self.funded.id


async def make_scene(
    session: AsyncSession,
    keyring: Keyring,
    *,
    cheques: int = 10,
    territory: tuple[str, ...] = ("35",),
    now: datetime | None = None,
    valid_from: date | None = None,
    valid_until: date | None = None,
    redeem_until: date | None = None,
    face_value_cents: int = 1000,
) -> Scene:
    """A programme (State and a département, 50/50) with `cheques` active cheques issued at
    `now` (default: the current instant)."""
    now = now or utcnow()
    issuer = await make_org(session, OrganisationKind.issuer)
    funded = await make_programme(
        session,
        issuers=[issuer],
        today=paris_day(now),
        territory=territory,
        booklet_sizes=(1, 5, BOOKLET),
        face_value_cents=face_value_cents,
        state_cents=max(500_000, cheques * face_value_cents),
        local_cents=max(500_000, cheques * face_value_cents),
        quota=max(1000, cheques),
        valid_from=valid_from,
        valid_until=valid_until,
        redeem_until=redeem_until,
    )
    scene = Scene(funded=funded, issuer=issuer, keyring=keyring)
    await issue(session, scene, cheques, now=now)
    return scene


async def issue(
    session: AsyncSession, scene: Scene, count: int, *, now: datetime | None = None
) -> list[ChequeRead]:
    """Issue `count` more active cheques (booklets of 10, then of 1) to new beneficiaries."""
    now = now or utcnow()
    agent = Actor(user_id=None, organisation_id=scene.issuer.id, role=Role.issuer_agent)  # type: ignore[arg-type]
    sizes = [BOOKLET] * (count // BOOKLET) + [1] * (count % BOOKLET)
    issued: list[ChequeRead] = []
    for size in sizes:
        beneficiary = await make_beneficiary(session, scene.issuer)
        booklet = await issuance.issue_booklet(
            session,
            keyring=scene.keyring,
            actor=agent,
            programme_id=scene.programme_id,
            beneficiary_id=beneficiary.id,  # type: ignore[arg-type]
            size=size,
            now=now,
        )
        issued.extend(booklet.cheques)
    scene.cheques.extend(issued)
    return issued


async def make_site(
    session: AsyncSession,
    app: object,
    *,
    commune_insee: str = "35238",
    qualified: bool = True,
) -> UserActor:
    """A site (qualified unless told) in `commune_insee` with one mediator."""
    return await make_actor(
        session, app, OrganisationKind.site, commune_insee=commune_insee, qualified=qualified
    )
