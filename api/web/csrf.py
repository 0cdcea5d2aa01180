"""CSRF protection for cookie-authenticated requests: a signed double-submit token.

The token lives in a readable cookie (`passnum_csrf`, so the scan page's script can send it in
a header even when the page came from the service worker's cache) and is echoed by every form
(`csrf_token` field) or JSON call (`X-CSRF-Token` header). It is `nonce.hmac(nonce)`: a cookie
planted by a sibling site cannot be forged, and a cross-site page cannot read it to echo it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from base64 import urlsafe_b64encode

from fastapi import Request
from starlette.responses import Response

from kit.errors import DomainError

COOKIE = "passnum_csrf"
FIELD = "csrf_token"
HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_MAX_AGE = 365 * 24 * 3600  # long-lived: an offline scanner may sync days later


class CsrfFailed(DomainError):
    code = "csrf_failed"
    message = (
        "La page a expiré ou la requête ne vient pas de ce site : rechargez la page et recommencez."
    )


def _key(request: Request) -> bytes:
    return hashlib.sha256(b"csrf:" + request.app.state.jwt_secret.encode()).digest()


def _mac(key: bytes, nonce: str) -> str:
    digest = hmac.new(key, nonce.encode(), hashlib.sha256).digest()
    return urlsafe_b64encode(digest[:18]).decode()


def _is_valid(request: Request, token: str | None) -> bool:
    if not token or token.count(".") != 1:
        return False
    nonce, mac = token.split(".")
    return bool(nonce) and hmac.compare_digest(mac, _mac(_key(request), nonce))


def token_for(request: Request) -> str:
    """The token to embed in this request's page: the cookie's, or a new one set on the answer."""
    cookie = request.cookies.get(COOKIE)
    if _is_valid(request, cookie):
        return cookie  # type: ignore[return-value]
    fresh = getattr(request.state, "csrf_fresh", None)
    if fresh is None:
        nonce = secrets.token_urlsafe(18)
        fresh = f"{nonce}.{_mac(_key(request), nonce)}"
        request.state.csrf_fresh = fresh
    return str(fresh)


def set_cookie_if_needed(request: Request, response: Response) -> None:
    fresh = getattr(request.state, "csrf_fresh", None)
    if fresh:
        response.set_cookie(
            COOKIE,
            fresh,
            max_age=_MAX_AGE,
            path="/",
            secure=bool(request.app.state.settings.secure_cookies),
            httponly=False,  # the scan page's script reads it for its JSON calls
            samesite="strict",
        )


def _matches_cookie(request: Request, submitted: str | None) -> bool:
    cookie = request.cookies.get(COOKIE)
    if cookie is None or submitted is None or not _is_valid(request, cookie):
        return False
    return hmac.compare_digest(submitted, cookie)


def check_json_request(request: Request) -> None:
    """For cookie-authenticated API calls: unsafe methods must carry the header token.

    Called by `api.deps.current_principal` when the credentials came from the cookie; a page
    form already checked by `protect_form` is let through.
    """
    if request.method in SAFE_METHODS or getattr(request.state, "csrf_ok", False):
        return
    if not _matches_cookie(request, request.headers.get(HEADER)):
        raise CsrfFailed()


async def protect_form(request: Request) -> None:
    """Router dependency of every page: a POST must echo the token (form field or header).

    A refused form sends the person back to the page they came from with a French message,
    rather than a bare error.
    """
    if request.method in SAFE_METHODS:
        return
    submitted = request.headers.get(HEADER)
    if submitted is None:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            value = form.get(FIELD)
            submitted = value if isinstance(value, str) else None
    if not _matches_cookie(request, submitted):
        from api.web.session import redirect_exception

        raise redirect_exception(
            _same_origin_referer(request) or "/",
            flash=("error", CsrfFailed.message),
            request=request,
        )
    request.state.csrf_ok = True


def _same_origin_referer(request: Request) -> str | None:
    referer = request.headers.get("referer", "")
    base = str(request.base_url)
    if referer.startswith(base):
        path = "/" + referer[len(base) :]
        return path if not path.startswith("//") else None
    return None
