"""Test data builders: organisations, users with their bearer headers.

Each builder goes through the real service functions, so a rule the service enforces also holds
for test data. SIRETs are generated valid (Luhn) and unique per call.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from api.security import Principal, create_access_token
from api.seed import luhn_complete
from kit.clock import utcnow
from pass_ import accounts
from pass_.enums import OrganisationKind, Qualification, Role
from pass_.models import AppUser, Organisation
from pass_.schemas import OrganisationCreate, UserCreate

_counter = itertools.count(random.randrange(10**6, 10**7))
ROLE_FOR_KIND = {
    OrganisationKind.operator: Role.operator_admin,
    OrganisationKind.financer: Role.financer,
    OrganisationKind.issuer: Role.issuer_agent,
    OrganisationKind.site: Role.site_mediator,
}
# Valid French IBANs for sites (schwifty-checked).
IBANS = [
    "FR1420041010050500013M02606",
    "FR7630001007941234567890185",
    "FR7630006000011234567890189",
]


def unique_siret() -> str:
    return luhn_complete(f"{next(_counter):013d}")


@dataclass
class Actor:
    """A user with their organisation and ready-made bearer headers."""

    user: AppUser
    org: Organisation
    headers: dict[str, str]

    @property
    def id(self) -> int:
        return int(self.user.id)  # type: ignore[arg-type]


async def make_org(
    session: AsyncSession,
    kind: OrganisationKind,
    *,
    name: str | None = None,
    commune_insee: str = "35238",
    qualified: bool = True,
    iban: str | None = None,
    **extra: object,
) -> Organisation:
    if kind == OrganisationKind.site and iban is None:
        iban = IBANS[0]
    org = await accounts.create_organisation(
        session,
        OrganisationCreate(
            kind=kind,
            name=name or f"{kind.value} {next(_counter)}",
            siret=unique_siret(),
            commune_insee=commune_insee,
            iban=iban,
            **extra,
        ),
    )  # type: ignore[arg-type]
    if kind == OrganisationKind.site and qualified:
        await accounts.set_qualification(
            session,
            site_id=org.id,  # type: ignore[arg-type]
            to=Qualification.qualified,
            now=utcnow(),
        )
    return org


def bearer(secret: str, user: AppUser, minutes: int = 30) -> dict[str, str]:
    token, _ = create_access_token(
        Principal(
            user_id=user.id,
            organisation_id=user.organisation_id,  # type: ignore[arg-type]
            role=Role(user.role),
            email=user.email,
        ),
        secret=secret,
        now=utcnow(),
        minutes=minutes,
    )
    return {"Authorization": f"Bearer {token}"}


async def make_actor(
    session: AsyncSession,
    app: object,
    kind: OrganisationKind,
    *,
    org: Organisation | None = None,
    password: str = "motdepasse-solide-42",
    **org_kwargs: object,
) -> Actor:
    """An organisation of `kind` (or `org`) and a user of the matching role in it."""
    org = org or await make_org(session, kind, **org_kwargs)  # type: ignore[arg-type]
    user = await accounts.create_user(
        session,
        UserCreate(
            email=f"user{next(_counter)}@exemple.fr",
            password=password,
            organisation_id=org.id,
            role=ROLE_FOR_KIND[kind],
        ),
    )  # type: ignore[arg-type]
    return Actor(user=user, org=org, headers=bearer(app.state.jwt_secret, user))  # type: ignore[attr-defined]
