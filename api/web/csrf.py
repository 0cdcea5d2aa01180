"""CSRF protection of the pages' forms; the token itself and the JSON calls' check are in
`api.csrf` (the HTTP core must not depend on the pages: no import circle through api.deps)."""

from __future__ import annotations

from fastapi import Request

from api.csrf import (
    COOKIE,
    FIELD,
    HEADER,
    SAFE_METHODS,
    CsrfFailed,
    _matches_cookie,
    check_json_request,
    set_cookie_if_needed,
    token_for,
)

__all__ = [
    "COOKIE",
    "FIELD",
    "HEADER",
    "CsrfFailed",
    "check_json_request",
    "protect_form",
    "set_cookie_if_needed",
    "token_for",
]


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
