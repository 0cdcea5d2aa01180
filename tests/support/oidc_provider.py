"""A local OpenID Connect provider that stands in for ProConnect in the tests (ProConnect is
unreachable from here): discovery, authorisation code with PKCE (S256 only), signed ID tokens
(RS256, authlib.jose), user info as a signed JWT like ProConnect's (`application/jwt`, with the
`siret` claim), JWKS and end_session. Written from the published OpenID Connect Core and
Discovery specifications and ProConnect's documented claims; served by http.server on a
loopback port, in a thread.

The identity it vouches for is whatever the test puts in `provider.identity`: the
authorisation endpoint consents at once (no login form to drive)."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

from authlib.jose import JsonWebKey, jwt


class OidcProvider:
    def __init__(self, *, client_id: str, client_secret: str) -> None:
        self.client_id, self.client_secret = client_id, client_secret
        self.key = JsonWebKey.generate_key("RSA", 2048, is_private=True,
                                           options={"kid": "test-key"})
        self.identity: dict[str, Any] = {}
        self.codes: dict[str, dict[str, Any]] = {}
        self.tokens: dict[str, dict[str, Any]] = {}
        self.logouts: list[dict[str, str]] = []
        self.authorize_requests: list[dict[str, str]] = []
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the stdlib's naming)
                provider._get(self)

            def do_POST(self) -> None:  # noqa: N802
                provider._post(self)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.issuer = f"http://127.0.0.1:{self._server.server_address[1]}/api/v2"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ helpers

    def _sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode({"alg": "RS256", "kid": "test-key"}, claims, self.key).decode()

    @staticmethod
    def _answer(handler: BaseHTTPRequestHandler, status: int, body: Any,
                content_type: str = "application/json",
                headers: dict[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else (
            body.encode() if isinstance(body, str) else json.dumps(body).encode())
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)

    def _get(self, h: BaseHTTPRequestHandler) -> None:
        url = urlparse(h.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        path = url.path.removeprefix("/api/v2")
        if path == "/.well-known/openid-configuration":
            return self._answer(h, 200, {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "userinfo_endpoint": f"{self.issuer}/userinfo",
                "jwks_uri": f"{self.issuer}/jwks",
                "end_session_endpoint": f"{self.issuer}/session/end",
                "response_types_supported": ["code"],
                "code_challenge_methods_supported": ["S256"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "userinfo_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["openid", "email", "siret", "given_name", "usual_name"],
            })
        if path == "/jwks":
            return self._answer(h, 200, {"keys": [self.key.as_dict(is_private=False)]})
        if path == "/authorize":
            self.authorize_requests.append(query)
            if (query.get("client_id") != self.client_id or query.get("response_type") != "code"
                    or query.get("code_challenge_method") != "S256"
                    or not query.get("code_challenge") or not query.get("nonce")
                    or "openid" not in query.get("scope", "").split()):
                return self._answer(h, 400, {"error": "invalid_request"})
            code = secrets.token_urlsafe(24)
            self.codes[code] = {"query": query, "identity": dict(self.identity)}
            target = f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query['state']})}"
            return self._answer(h, 302, b"", headers={"Location": target})
        if path == "/userinfo":
            token = h.headers.get("Authorization", "").removeprefix("Bearer ")
            grant = self.tokens.get(token)
            if grant is None:
                return self._answer(h, 401, {"error": "invalid_token"})
            identity = grant["identity"]
            claims = {"iss": self.issuer, "aud": self.client_id, **identity}
            return self._answer(h, 200, self._sign(claims), content_type="application/jwt")
        if path == "/session/end":
            self.logouts.append(query)
            target = query.get("post_logout_redirect_uri", "/")
            return self._answer(h, 302, b"", headers={"Location": target})
        return self._answer(h, 404, {"error": "not_found"})

    def _post(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length", "0"))
        form = {k: v[0] for k, v in parse_qs(h.rfile.read(length).decode()).items()}
        if urlparse(h.path).path.removeprefix("/api/v2") != "/token":
            return self._answer(h, 404, {"error": "not_found"})
        if (form.get("client_id"), form.get("client_secret")) != (self.client_id,
                                                                  self.client_secret):
            return self._answer(h, 401, {"error": "invalid_client"})
        grant = self.codes.pop(form.get("code", ""), None)  # a code is used once
        if grant is None or form.get("grant_type") != "authorization_code":
            return self._answer(h, 400, {"error": "invalid_grant"})
        query = grant["query"]
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(
            hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if challenge != query["code_challenge"] or form.get("redirect_uri") != \
                query["redirect_uri"]:
            return self._answer(h, 400, {"error": "invalid_grant"})
        now = int(time.time())
        identity = grant["identity"]
        id_token = self._sign({"iss": self.issuer, "aud": self.client_id,
                               "sub": identity["sub"], "iat": now, "exp": now + 60,
                               "nonce": query["nonce"], "acr": "eidas1"})
        access = secrets.token_urlsafe(24)
        self.tokens[access] = grant
        return self._answer(h, 200, {"access_token": access, "token_type": "Bearer",
                                     "expires_in": 60, "id_token": id_token})

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
