"""Single sign-on with ProConnect (the State's OpenID Connect for public agents): the rule
that turns the identity ProConnect vouches for into one of our accounts.

An identity (`email`, `siret` claims) opens a session only for an existing, active account of
an issuer agent or a site mediator, with that e-mail, in the organisation of that SIRET. No
account is ever created here: an unknown SIRET, or a known organisation without such an
account, records an access request for the operator and answers a French message.
"""

from __future__ import annotations

from datetime import datetime

import structlog
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from kit.errors import DomainError, Forbidden, NotFound
from pass_.enums import Role
from pass_.models import AppUser, Organisation

log = structlog.get_logger()

SSO_ROLES = (Role.issuer_agent, Role.site_mediator)


class UnknownOrganisation(DomainError):
    code = "sso_unknown_organisation"
    message = ("Votre structure (SIRET {siret}) n'est pas encore inscrite au Pass numérique. "
               "Une demande d'accès a été transmise à l'opérateur, qui reviendra vers vous.")


class UnknownAccount(DomainError):
    code = "sso_unknown_account"
    message = ("Votre structure est inscrite, mais aucun compte n'existe pour {email}. Une "
               "demande d'accès a été transmise à l'opérateur.")


class SsoRoleRefused(Forbidden):
    code = "sso_role_refused"
    message = ("La connexion avec ProConnect est réservée aux agents des structures "
               "prescriptrices et aux médiateurs : connectez-vous avec votre mot de passe.")


class SsoClaimsMissing(DomainError):
    code = "sso_claims_missing"
    message = ("ProConnect n'a pas transmis votre adresse e-mail et le SIRET de votre "
               "structure : la connexion est impossible.")


_REQUEST = text("""
INSERT INTO access_request (siret, email, organisation_id, reason)
VALUES (:siret, :email, :org, :reason)
ON CONFLICT (siret, email) WHERE handled_at IS NULL DO NOTHING
""")


async def match_account(session: AsyncSession, *, email: str | None,
                        siret: str | None) -> AppUser:
    """The account ProConnect's identity opens, or a DomainError saying why not (an access
    request recorded for the operator when the SIRET or the account is unknown)."""
    email = (email or "").strip().lower()
    siret = "".join((siret or "").split())
    if not email or not siret:
        raise SsoClaimsMissing()
    organisation = await session.scalar(
        select(Organisation).where(col(Organisation.siret) == siret).limit(1))
    if organisation is None:
        await session.execute(_REQUEST, {"siret": siret, "email": email, "org": None,
                                         "reason": "unknown_siret"})
        log.info("sso_access_requested", reason="unknown_siret")
        raise UnknownOrganisation(UnknownOrganisation.message.format(siret=siret))
    user = await session.scalar(select(AppUser).where(
        func.lower(col(AppUser.email)) == email,
        col(AppUser.organisation_id) == organisation.id))
    if user is None or not user.is_active:
        await session.execute(_REQUEST, {"siret": siret, "email": email,
                                         "org": organisation.id, "reason": "unknown_account"})
        log.info("sso_access_requested", reason="unknown_account",
                 organisation_id=organisation.id)
        raise UnknownAccount(UnknownAccount.message.format(email=email))
    if Role(user.role) not in SSO_ROLES:
        raise SsoRoleRefused()
    return user


async def open_access_requests(session: AsyncSession) -> list[dict[str, object]]:
    """The requests the operator has not handled yet, oldest first."""
    rows = (await session.execute(text("""
        SELECT r.id, r.siret, r.email, r.reason, r.created_at, o.name
        FROM access_request r LEFT JOIN organisation o ON o.id = r.organisation_id
        WHERE r.handled_at IS NULL ORDER BY r.id"""))).all()
    return [{"id": i, "siret": s, "email": e, "reason": reason, "created_at": at,
             "organisation_name": name} for i, s, e, reason, at, name in rows]


async def mark_handled(session: AsyncSession, *, request_id: int, now: datetime) -> None:
    """The operator dealt with the request (created the organisation or the account, or
    declined): it leaves the list; a new sign-in attempt would open a new one."""
    done = (await session.execute(text(
        "UPDATE access_request SET handled_at = :now WHERE id = :id AND handled_at IS NULL "
        "RETURNING id"), {"now": now, "id": request_id})).first()
    if done is None:
        raise NotFound("Demande d'accès introuvable ou déjà traitée.", request_id=request_id)
