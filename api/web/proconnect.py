"""Sign-in with ProConnect (OpenID Connect, authlib) for issuer agents and site mediators,
beside passwords; off unless configured (kit.settings: proconnect_*).

The flow: discovery, then the authorisation code with PKCE (S256), `state` and `nonce` kept in
a signed cookie for ten minutes; the code is exchanged, the ID token's signature (the
provider's JWKS), issuer, audience, expiry and nonce are checked, the user info (a signed JWT
at ProConnect, or JSON) gives `email` and `siret`, and pass_.sso.match_account decides. Logout
ends the ProConnect session too (end_session_endpoint with id_token_hint).
"""

from __future__ import annotations

import secrets
import time
from typing import Any
from urllib.parse import urlencode

import httpx
import structlog
from authlib.jose import JsonWebKey, JsonWebToken
from authlib.jose.errors import JoseError
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oidc.core import CodeIDToken
from fastapi import APIRouter, Request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.responses import RedirectResponse, Response

from api.deps import SessionDep
from api.security import Principal, create_access_token
from api.web.session import home_for, set_session_cookie
from api.web.templating import render
from kit.clock import utcnow
from kit.errors import DomainError
from pass_ import sso
from pass_.enums import Role

log = structlog.get_logger()
router = APIRouter(include_in_schema=False)

FLOW_COOKIE = "passnum_oidc"
LOGOUT_COOKIE = "passnum_oidc_logout"
FLOW_SECONDS = 600
_jwt = JsonWebToken(["RS256", "ES256", "PS256"])
_discovery: dict[str, tuple[float, dict[str, Any]]] = {}


class ProConnectError(DomainError):
    code = "sso_failed"
    message = "La connexion avec ProConnect a échoué : réessayez, ou utilisez votre mot de passe."


def enabled(settings: Any) -> bool:
    return bool(settings.proconnect_issuer and settings.proconnect_client_id
                and settings.proconnect_client_secret)


async def _metadata(settings: Any) -> dict[str, Any]:
    """The provider's discovery document (kept an hour)."""
    issuer = settings.proconnect_issuer.rstrip("/")
    cached = _discovery.get(issuer)
    if cached and cached[0] > time.monotonic():
        return cached[1]
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.get(f"{issuer}/.well-known/openid-configuration")
    answer.raise_for_status()
    document = answer.json()
    if document.get("issuer", "").rstrip("/") != issuer:
        raise ProConnectError(reason="issuer_mismatch")
    _discovery[issuer] = (time.monotonic() + 3600, document)
    return document


def _serializer(request: Request) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(request.app.state.jwt_secret, salt="proconnect")


def _refused(request: Request, message: str, status: int) -> Response:
    return render(request, "login.html", {"title": "Connexion", "errors": {"_form": message},
                                          "values": {}, "next": ""},
                  status_code=status, principal=None)


def _cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="lax",
                        secure=bool(request.app.state.settings.secure_cookies))


@router.get("/connexion/proconnect")
async def start(request: Request) -> Response:
    settings = request.app.state.settings
    if not enabled(settings):
        return render(request, "not_found.html", {"title": "Page introuvable"}, status_code=404)
    try:
        metadata = await _metadata(settings)
    except (httpx.HTTPError, ValueError, DomainError):
        log.warning("proconnect_discovery_failed")
        return _refused(request, ProConnectError.message, 502)
    state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(64)
    query = {
        "response_type": "code", "client_id": settings.proconnect_client_id,
        "redirect_uri": str(request.url_for("proconnect_callback")),
        "scope": settings.proconnect_scope, "state": state, "nonce": nonce,
        "code_challenge": create_s256_code_challenge(verifier),
        "code_challenge_method": "S256",
    }
    response = RedirectResponse(f"{metadata['authorization_endpoint']}?{urlencode(query)}",
                                status_code=303)
    flow = _serializer(request).dumps({"state": state, "nonce": nonce, "verifier": verifier})
    _cookie(request, response, FLOW_COOKIE, flow, FLOW_SECONDS)
    return response


async def _identity(request: Request, code: str, flow: dict[str, str]) -> dict[str, Any]:
    """Exchange the code and return the verified claims (ID token, then user info)."""
    settings = request.app.state.settings
    metadata = await _metadata(settings)
    async with httpx.AsyncClient(timeout=15) as http:
        token = await http.post(metadata["token_endpoint"], data={
            "grant_type": "authorization_code", "code": code,
            "redirect_uri": str(request.url_for("proconnect_callback")),
            "client_id": settings.proconnect_client_id,
            "client_secret": settings.proconnect_client_secret,
            "code_verifier": flow["verifier"]})
        if token.status_code != 200:
            raise ProConnectError(reason="token_refused", status=token.status_code)
        tokens = token.json()
        keys = JsonWebKey.import_key_set((await http.get(metadata["jwks_uri"])).json())
        claims = _jwt.decode(tokens["id_token"], keys, claims_cls=CodeIDToken, claims_options={
            "iss": {"essential": True, "values": [metadata["issuer"]]},
            "aud": {"essential": True, "values": [settings.proconnect_client_id]},
            "nonce": {"essential": True, "value": flow["nonce"]},
        })
        claims.validate(leeway=60)
        info = await http.get(metadata["userinfo_endpoint"],
                              headers={"Authorization": f"Bearer {tokens['access_token']}"})
        if info.status_code != 200:
            raise ProConnectError(reason="userinfo_refused", status=info.status_code)
        if info.headers.get("content-type", "").startswith("application/jwt"):
            userinfo = dict(_jwt.decode(info.text, keys))
        else:
            userinfo = info.json()
    if userinfo.get("sub") != claims["sub"]:
        raise ProConnectError(reason="sub_mismatch")
    return {**dict(claims), **userinfo, "id_token": tokens["id_token"]}


@router.get("/connexion/proconnect/retour", name="proconnect_callback")
async def callback(request: Request, session: SessionDep, code: str = "", state: str = "",
                   error: str = "") -> Response:
    settings = request.app.state.settings
    if not enabled(settings):
        return render(request, "not_found.html", {"title": "Page introuvable"}, status_code=404)
    try:
        flow = _serializer(request).loads(request.cookies.get(FLOW_COOKIE, ""),
                                          max_age=FLOW_SECONDS)
    except BadSignature:
        flow = None
    if error:
        return _refused(request, "La connexion avec ProConnect a été annulée ou refusée.", 401)
    if not flow or not code or not secrets.compare_digest(str(flow.get("state")), state):
        log.warning("proconnect_state_mismatch")
        return _refused(request, "La demande de connexion a expiré ou n'est pas la vôtre : "
                                 "recommencez.", 400)
    try:
        identity = await _identity(request, code, flow)
    except (httpx.HTTPError, JoseError, KeyError, ValueError, DomainError) as exc:
        log.warning("proconnect_failed", error=type(exc).__name__)
        return _refused(request, ProConnectError.message, 401)
    try:
        user = await sso.match_account(session, email=identity.get("email"),
                                       siret=identity.get("siret"))
    except DomainError as exc:  # the access request, if any, is committed with the answer
        response = _refused(request, exc.message, 403)
        response.delete_cookie(FLOW_COOKIE, path="/")
        return response
    principal = Principal(user_id=user.id, organisation_id=user.organisation_id,  # type: ignore[arg-type]
                          role=Role(user.role), email=user.email)
    token, expires_in = create_access_token(
        principal, secret=request.app.state.jwt_secret, now=utcnow(),
        minutes=settings.access_token_minutes)
    response = RedirectResponse(home_for(principal.role), status_code=303)
    set_session_cookie(request, response, token, expires_in)
    _cookie(request, response, LOGOUT_COOKIE,
            _serializer(request).dumps({"id_token": identity["id_token"]}), expires_in)
    response.delete_cookie(FLOW_COOKIE, path="/")
    log.info("proconnect_login", user_id=user.id)
    return response


async def logout_url(request: Request) -> str | None:
    """Where to send a user who signed in with ProConnect on logout: the provider's
    end_session_endpoint, so that the ProConnect session ends too (None otherwise)."""
    settings = request.app.state.settings
    raw = request.cookies.get(LOGOUT_COOKIE)
    if not raw or not enabled(settings):
        return None
    try:
        id_token = _serializer(request).loads(raw)["id_token"]
        metadata = await _metadata(settings)
    except (BadSignature, KeyError, httpx.HTTPError, ValueError, DomainError):
        return None
    if not metadata.get("end_session_endpoint"):
        return None
    back = str(request.url_for("login_form")) + "?raison=deconnexion"
    return f"{metadata['end_session_endpoint']}?" + urlencode({
        "id_token_hint": id_token, "state": secrets.token_urlsafe(16),
        "post_logout_redirect_uri": back})
