"""CSRF protection for cookie-authenticated requests: a signed double-submit token.

The HTTP core's half (`api.deps` checks JSON calls made with the session cookie); the pages'
form guard, which answers with a redirect, is `api.web.csrf.protect_form`.

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
    form already checked by `api.web.csrf.protect_form` is let through.
    """
    if request.method in SAFE_METHODS or getattr(request.state, "csrf_ok", False):
        return
    if not _matches_cookie(request, request.headers.get(HEADER)):
        raise CsrfFailed()
