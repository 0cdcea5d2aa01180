"""Organisations and people: creation, site qualification, password checks."""

from __future__ import annotations

from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from pass_.enums import ROLE_KIND, OrganisationKind, Qualification, Role
from pass_.errors import (
    EmailTaken,
    InvalidCredentials,
    InvalidInput,
    NotASite,
    NotFound,
    OrganisationExists,
    WrongOrganisationKind,
)
from pass_.models import AppUser, Organisation
from pass_.schemas import BankDetailsUpdate, OrganisationCreate, UserCreate

_hasher = PasswordHasher()
# A real hash to verify against when the email is unknown, so timing does not reveal accounts.
_DUMMY_HASH = _hasher.hash("mot de passe factice pour égaliser les temps")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def create_organisation(session: AsyncSession, data: OrganisationCreate) -> Organisation:
    if (
        data.kind != OrganisationKind.site
        and (data.iban or data.bic)
        and data.kind != OrganisationKind.financer
    ):
        raise InvalidInput(
            "Seuls les lieux de médiation et les financeurs ont des coordonnées bancaires.",
            code="validation_error",
            field="iban",
        )
    org = Organisation(
        kind=data.kind.value,
        name=data.name.strip(),
        siret=data.siret,
        commune_insee=data.commune_insee,
        address=data.address,
        email=data.email,
        iban=data.iban,
        bic=data.bic,
        financer_category=data.financer_category.value if data.financer_category else None,
        qualification=Qualification.pending.value if data.kind == OrganisationKind.site else None,
        services=[s.value for s in data.services],
    )
    try:
        # add() inside the savepoint: a refused row must not stay pending in the session.
        async with session.begin_nested():
            session.add(org)
            await session.flush()
    except IntegrityError:
        raise OrganisationExists(siret=data.siret, kind=data.kind.value) from None
    return org


async def get_organisation(
    session: AsyncSession, organisation_id: int, kind: OrganisationKind | None = None
) -> Organisation:
    org = await session.get(Organisation, organisation_id)
    if org is None or (kind is not None and org.kind != kind.value):
        raise NotFound("Organisation introuvable.", organisation_id=organisation_id)
    return org


async def list_organisations(
    session: AsyncSession,
    *,
    kind: OrganisationKind | None = None,
    qualification: Qualification | None = None,
) -> list[Organisation]:
    stmt = select(Organisation).order_by(Organisation.kind, Organisation.name)
    if kind:
        stmt = stmt.where(Organisation.kind == kind.value)
    if qualification:
        stmt = stmt.where(Organisation.qualification == qualification.value)
    return list((await session.scalars(stmt)).all())


_TRANSITIONS: dict[Qualification, set[Qualification]] = {
    Qualification.qualified: {Qualification.pending, Qualification.suspended},
    Qualification.suspended: {Qualification.qualified},
    Qualification.withdrawn: {
        Qualification.pending,
        Qualification.qualified,
        Qualification.suspended,
    },
}


async def set_qualification(
    session: AsyncSession, *, site_id: int, to: Qualification, now: datetime
) -> Organisation:
    org = await session.get(Organisation, site_id, with_for_update=True)
    if org is None:
        raise NotFound("Lieu introuvable.", organisation_id=site_id)
    if org.kind != OrganisationKind.site.value:
        raise NotASite(organisation_id=site_id)
    current = Qualification(org.qualification)
    if current == to:
        return org
    if current not in _TRANSITIONS.get(to, set()):
        raise InvalidInput(
            f"Un lieu « {current.value} » ne peut pas passer à « {to.value} ».",
            code="invalid_transition",
            current=current.value,
            to=to.value,
        )
    org.qualification = to.value
    org.qualification_changed_at = now
    await session.flush()
    return org


async def update_bank_details(
    session: AsyncSession, *, organisation_id: int, data: BankDetailsUpdate
) -> Organisation:
    org = await get_organisation(session, organisation_id)
    if org.kind not in (OrganisationKind.site.value, OrganisationKind.financer.value):
        raise InvalidInput("Seuls les lieux et les financeurs ont des coordonnées bancaires.")
    org.iban, org.bic = data.iban, data.bic
    await session.flush()
    return org


async def create_user(session: AsyncSession, data: UserCreate) -> AppUser:
    org = await get_organisation(session, data.organisation_id)
    if ROLE_KIND[data.role].value != org.kind:
        raise WrongOrganisationKind(role=data.role.value, organisation_kind=org.kind)
    exists = await session.scalar(
        select(AppUser.id).where(func.lower(AppUser.email) == data.email.lower())
    )
    if exists:
        raise EmailTaken()
    user = AppUser(
        email=data.email.lower(),
        password_hash=hash_password(data.password),
        organisation_id=org.id,
        role=data.role.value,
    )
    try:
        async with session.begin_nested():
            session.add(user)
            await session.flush()
    except IntegrityError:
        raise EmailTaken() from None
    return user


async def authenticate(
    session: AsyncSession, *, email: str, password: str, now: datetime
) -> AppUser:
    user = await session.scalar(
        select(AppUser).where(func.lower(AppUser.email) == (email or "").strip().lower())
    )
    if user is None:
        verify_password(_DUMMY_HASH, password)
        raise InvalidCredentials()
    if not verify_password(user.password_hash, password) or not user.is_active:
        raise InvalidCredentials()
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.last_login_at = now
    await session.flush()
    return user


async def list_users(session: AsyncSession, *, organisation_id: int) -> list[AppUser]:
    """The organisation's user accounts, by e-mail; NotFound if there is no such organisation."""
    await get_organisation(session, organisation_id)
    stmt = (
        select(AppUser)
        .where(AppUser.organisation_id == organisation_id)
        .order_by(func.lower(AppUser.email), AppUser.id)
    )
    return list((await session.scalars(stmt)).all())


async def get_user(session: AsyncSession, user_id: int) -> AppUser | None:
    return await session.get(AppUser, user_id)


async def find_user_by_email(session: AsyncSession, email: str) -> AppUser | None:
    return await session.scalar(select(AppUser).where(func.lower(AppUser.email) == email.lower()))


__all__ = ["Role"]
