"""Authentication, organisations, site qualification and users (DESIGN.md §7)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from pydantic import BaseModel

from api.deps import (
    CurrentUser,
    OperatorAdmin,
    SessionDep,
    SettingsDep,
    check_login_attempt,
    record_failed_login,
)
from api.security import Principal, create_access_token
from kit.clock import utcnow
from kit.errors import Forbidden
from pass_ import accounts
from pass_.enums import OrganisationKind, Qualification, Role
from pass_.errors import InvalidCredentials
from pass_.schemas import (
    BankDetailsUpdate,
    OrganisationCreate,
    OrganisationRead,
    UserCreate,
    UserRead,
)

router = APIRouter(prefix="/api/v1", tags=["comptes"])


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int


@router.post("/auth/token", response_model=TokenOut)
async def token(
    session: SessionDep,
    settings: SettingsDep,
    request: Request,
    username: Annotated[str, Form(max_length=254)],
    password: Annotated[str, Form(max_length=200)],
) -> TokenOut:
    check_login_attempt(request, username)
    try:
        user = await accounts.authenticate(
            session, email=username, password=password, now=utcnow()
        )
    except InvalidCredentials:
        record_failed_login(request, username)
        raise
    principal = Principal(
        user_id=user.id,
        organisation_id=user.organisation_id,  # type: ignore[arg-type]
        role=Role(user.role),
        email=user.email,
    )
    access, expires_in = create_access_token(
        principal,
        secret=request.app.state.jwt_secret,
        now=utcnow(),
        minutes=settings.access_token_minutes,
    )
    return TokenOut(access_token=access, expires_in=expires_in)


@router.get("/me")
async def me(principal: CurrentUser, session: SessionDep) -> dict[str, object]:
    org = await accounts.get_organisation(session, principal.organisation_id)
    return {
        "user_id": principal.user_id,
        "email": principal.email,
        "role": principal.role,
        "organisation": OrganisationRead.model_validate(org).model_dump(mode="json"),
    }


@router.post("/organisations", status_code=201, response_model=OrganisationRead)
async def create_organisation(
    data: OrganisationCreate, _: OperatorAdmin, session: SessionDep
) -> OrganisationRead:
    org = await accounts.create_organisation(session, data)
    return OrganisationRead.model_validate(org)


@router.get("/organisations", response_model=list[OrganisationRead])
async def list_organisations(
    _: OperatorAdmin,
    session: SessionDep,
    kind: OrganisationKind | None = None,
    qualification: Qualification | None = None,
) -> list[OrganisationRead]:
    orgs = await accounts.list_organisations(session, kind=kind, qualification=qualification)
    return [OrganisationRead.model_validate(o) for o in orgs]


@router.get("/organisations/{organisation_id}", response_model=OrganisationRead)
async def get_organisation(
    organisation_id: int, principal: CurrentUser, session: SessionDep
) -> OrganisationRead:
    if principal.role != Role.operator_admin and principal.organisation_id != organisation_id:
        raise accounts.NotFound("Organisation introuvable.", organisation_id=organisation_id)
    org = await accounts.get_organisation(session, organisation_id)
    return OrganisationRead.model_validate(org)


@router.get("/organisations/{organisation_id}/users", response_model=list[UserRead])
async def list_users(organisation_id: int, _: OperatorAdmin, session: SessionDep) -> list[UserRead]:
    users = await accounts.list_users(session, organisation_id=organisation_id)
    return [UserRead.model_validate(u) for u in users]


@router.put("/organisations/{organisation_id}/bank-details", response_model=OrganisationRead)
async def update_bank_details(
    organisation_id: int, data: BankDetailsUpdate, principal: CurrentUser, session: SessionDep
) -> OrganisationRead:
    if principal.role != Role.operator_admin:
        # Another organisation's record does not exist for this user (as on GET).
        if principal.organisation_id != organisation_id:
            raise accounts.NotFound("Organisation introuvable.", organisation_id=organisation_id)
        if principal.role not in (Role.site_mediator, Role.financer):
            raise Forbidden()
    org = await accounts.update_bank_details(session, organisation_id=organisation_id, data=data)
    return OrganisationRead.model_validate(org)


async def _qualify(site_id: int, to: Qualification, session: SessionDep) -> OrganisationRead:
    org = await accounts.set_qualification(session, site_id=site_id, to=to, now=utcnow())
    return OrganisationRead.model_validate(org)


@router.post("/sites/{site_id}/qualify", response_model=OrganisationRead)
async def qualify(site_id: int, _: OperatorAdmin, session: SessionDep) -> OrganisationRead:
    return await _qualify(site_id, Qualification.qualified, session)


@router.post("/sites/{site_id}/suspend", response_model=OrganisationRead)
async def suspend(site_id: int, _: OperatorAdmin, session: SessionDep) -> OrganisationRead:
    return await _qualify(site_id, Qualification.suspended, session)


@router.post("/sites/{site_id}/withdraw", response_model=OrganisationRead)
async def withdraw(site_id: int, _: OperatorAdmin, session: SessionDep) -> OrganisationRead:
    return await _qualify(site_id, Qualification.withdrawn, session)


@router.post("/users", status_code=201, response_model=UserRead)
async def create_user(data: UserCreate, _: OperatorAdmin, session: SessionDep) -> UserRead:
    user = await accounts.create_user(session, data)
    return UserRead.model_validate(user)
