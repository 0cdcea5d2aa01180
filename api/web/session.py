"""Who is looking at a page: the session cookie, role homes, redirects and flash messages.

The cookie holds the same JWT as the API (`api.deps` accepts it); a page that finds no valid
session sends the person to the login page with a French explanation instead of an error body.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request
from itsdangerous import BadSignature, URLSafeSerializer
from starlette.responses import RedirectResponse, Response

from api.deps import COOKIE_NAME, SessionDep, Unauthenticated, current_principal
from api.security import InvalidAccessToken, Principal, TokenExpired
from pass_.enums import Role

FLASH_COOKIE = "passnum_flash"

HOMES: dict[Role, str] = {
    Role.operator_admin: "/operateur",
    Role.issuer_agent: "/prescripteur",
    Role.site_mediator: "/mediateur",
    Role.financer: "/financeur",
}

# Why the login page is shown (query `raison`), in the words people read.
LOGIN_REASONS: dict[str, str] = {
    "expiree": "Votre session a expiré : reconnectez-vous pour continuer.",
    "requise": "Connectez-vous pour accéder à cette page.",
    "deconnexion": "Vous êtes déconnecté. À bientôt !",
    "inactif": "Ce compte n'est plus actif : reconnectez-vous ou contactez l'opérateur.",
}


def home_for(role: Role) -> str:
    return HOMES[role]


def _serializer(request: Request) -> URLSafeSerializer:
    return URLSafeSerializer(request.app.state.jwt_secret, salt="passnum-flash")


def flash_cookie_value(request: Request, level: str, message: str) -> str:
    return str(_serializer(request).dumps([level, message]))


def set_flash(request: Request, response: Response, level: str, message: str) -> None:
    """A one-time message shown by the next page rendered (after a POST → redirect)."""
    response.set_cookie(
        FLASH_COOKIE,
        flash_cookie_value(request, level, message),
        max_age=120,
        path="/",
        httponly=True,
        samesite="lax",
        secure=bool(request.app.state.settings.secure_cookies),
    )


def read_flash(request: Request) -> tuple[str, str] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        level, message = _serializer(request).loads(raw)
    except (BadSignature, ValueError, TypeError):
        return None
    return str(level), str(message)


def redirect(
    request: Request, url: str, *, flash: tuple[str, str] | None = None
) -> RedirectResponse:
    response = RedirectResponse(url, status_code=303)
    if flash:
        set_flash(request, response, *flash)
    return response


def redirect_exception(
    url: str, *, flash: tuple[str, str] | None = None, request: Request | None = None
) -> HTTPException:
    """An exception that answers 303 to `url` (dependencies cannot return a response).

    The app's HTTP error handler keeps the headers; the browser follows the redirect.
    """
    headers = {"Location": url}
    if flash is not None and request is not None:
        secure = "; Secure" if request.app.state.settings.secure_cookies else ""
        headers["Set-Cookie"] = (
            f"{FLASH_COOKIE}={flash_cookie_value(request, *flash)}; Max-Age=120; Path=/; "
            f"HttpOnly; SameSite=Lax{secure}"
        )
    return HTTPException(status_code=303, headers=headers)


def safe_next(path: str | None) -> str | None:
    """A local path to go back to after login (never another site)."""
    if path and path.startswith("/") and not path.startswith("//") and "\\" not in path:
        return path
    return None


def login_url(reason: str, next_path: str | None = None) -> str:
    url = f"/connexion?raison={reason}"
    if safe_next(next_path):
        url += "&suite=" + quote(next_path or "", safe="/")
    return url


async def page_principal(request: Request, session: SessionDep) -> Principal:
    """The signed-in person, or a redirect to the login page saying why."""
    if not request.cookies.get(COOKIE_NAME) and not request.headers.get("authorization"):
        raise redirect_exception(login_url("requise", request.url.path))
    try:
        return await current_principal(request, session)
    except TokenExpired:
        raise redirect_exception(login_url("expiree", request.url.path)) from None
    except InvalidAccessToken:
        raise redirect_exception(login_url("requise", request.url.path)) from None
    except Unauthenticated:
        raise redirect_exception(login_url("inactif", request.url.path)) from None


PagePrincipal = Annotated[Principal, Depends(page_principal)]


def page_role(*roles: Role) -> Callable[..., Awaitable[Principal]]:
    allowed = frozenset(roles)

    async def check(request: Request, principal: PagePrincipal) -> Principal:
        if principal.role not in allowed:
            raise redirect_exception(
                home_for(principal.role),
                flash=("error", "Cette page n'est pas accessible avec votre compte."),
                request=request,
            )
        return principal

    return check


OperatorPage = Annotated[Principal, Depends(page_role(Role.operator_admin))]
AgentPage = Annotated[Principal, Depends(page_role(Role.issuer_agent))]
MediatorPage = Annotated[Principal, Depends(page_role(Role.site_mediator))]
FinancerPage = Annotated[Principal, Depends(page_role(Role.financer))]


def set_session_cookie(request: Request, response: Response, token: str, max_age: int) -> None:
    response.set_cookie(
        COOKIE_NAME,
        token,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="lax",
        secure=bool(request.app.state.settings.secure_cookies),
    )


def clear_session_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(
        COOKIE_NAME,
        path="/",
        httponly=True,
        samesite="lax",
        secure=bool(request.app.state.settings.secure_cookies),
    )
