"""Login, logout and the landing redirect: each role lands on its own home."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from starlette.responses import Response

from api.deps import (
    COOKIE_NAME,
    SessionDep,
    SettingsDep,
    check_login_attempt,
    record_failed_login,
)
from api.security import Principal, create_access_token, decode_access_token
from api.web import csrf, proconnect
from api.web.session import (
    LOGIN_REASONS,
    clear_session_cookie,
    home_for,
    redirect,
    safe_next,
    set_session_cookie,
)
from api.web.templating import render
from kit.clock import utcnow
from kit.errors import DomainError
from pass_ import accounts
from pass_.enums import Role
from pass_.errors import InvalidCredentials

router = APIRouter(include_in_schema=False, dependencies=[Depends(csrf.protect_form)])


def _cookie_principal(request: Request) -> Principal | None:
    token = request.cookies.get(COOKIE_NAME)
    if not token:
        return None
    try:
        return decode_access_token(token, secret=request.app.state.jwt_secret)
    except DomainError:
        return None


@router.get("/")
async def landing(request: Request) -> Response:
    principal = _cookie_principal(request)
    if principal is None:
        return redirect(request, "/connexion")
    return redirect(request, home_for(principal.role))


@router.get("/connexion")
async def login_form(
    request: Request, raison: str | None = None, suite: str | None = None
) -> Response:
    principal = _cookie_principal(request)
    if principal is not None and raison is None:
        return redirect(request, safe_next(suite) or home_for(principal.role))
    return render(
        request,
        "login.html",
        {
            "title": "Connexion",
            "reason": LOGIN_REASONS.get(raison or ""),
            "reason_key": raison,
            "next": safe_next(suite),
        },
        principal=None,
    )


@router.post("/connexion")
async def login(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    email: Annotated[str, Form(max_length=254)] = "",
    password: Annotated[str, Form(max_length=200)] = "",
    suite: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    errors: dict[str, str] = {}
    if not email.strip():
        errors["email"] = "Saisissez votre adresse e-mail."
    if not password:
        errors["password"] = "Saisissez votre mot de passe."
    status = 400
    if not errors:
        try:
            # The same throttling as the API's token endpoint, before any password is hashed.
            check_login_attempt(request, email)
            async with session.begin_nested():  # a refusal undoes only this
                user = await accounts.authenticate(
                    session, email=email, password=password, now=utcnow()
                )
        except HTTPException as exc:  # too many failed attempts
            detail: dict[str, object] = exc.detail if isinstance(exc.detail, dict) else {}
            errors["_form"] = str(detail.get("message", "Trop de tentatives de connexion."))
            status = 429
        except InvalidCredentials as exc:
            record_failed_login(request, email)
            errors["_form"] = exc.message
            status = 401
        except DomainError as exc:
            errors["_form"] = exc.message
            status = 401
        else:
            principal = Principal(
                user_id=user.id,  # type: ignore[arg-type]
                organisation_id=user.organisation_id,
                role=Role(user.role),
                email=user.email,
            )
            token, expires_in = create_access_token(
                principal,
                secret=request.app.state.jwt_secret,
                now=utcnow(),
                minutes=settings.access_token_minutes,
            )
            target = safe_next(suite) or home_for(principal.role)
            if not target.startswith(home_for(principal.role)):
                target = home_for(principal.role)
            response = redirect(request, target)
            set_session_cookie(request, response, token, expires_in)
            return response
    return render(
        request,
        "login.html",
        {"title": "Connexion", "errors": errors, "values": {"email": email}, "next": suite},
        status_code=status,
        principal=None,
    )


@router.post("/deconnexion")
async def logout(request: Request) -> Response:
    ended_at_proconnect = await proconnect.logout_url(request)  # None without ProConnect
    response = redirect(request, ended_at_proconnect or "/connexion?raison=deconnexion")
    clear_session_cookie(request, response)
    if ended_at_proconnect:
        response.delete_cookie(proconnect.LOGOUT_COOKIE, path="/")
    return response
