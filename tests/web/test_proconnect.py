"""ProConnect sign-in (issue 17), against a local OpenID provider built in the tests
(tests/support/oidc_provider.py) that stands in for ProConnect: discovery, PKCE, state and
nonce, the siret/email claims matched to an existing account, no account created silently, an
access request for the operator, logout at the provider too; off unless configured."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from sqlalchemy import text

from api.web import proconnect
from kit.clock import utcnow
from pass_ import sso
from pass_.enums import OrganisationKind
from tests.factories import make_actor, unique_siret
from tests.support.oidc_provider import OidcProvider


@pytest.fixture(scope="module")
def provider() -> Iterator[OidcProvider]:
    op = OidcProvider(client_id="passnum-test", client_secret="secret-de-test")
    yield op
    op.close()


@pytest.fixture
def configured(app: Any, provider: OidcProvider, monkeypatch: pytest.MonkeyPatch) -> OidcProvider:
    settings = app.state.settings
    monkeypatch.setattr(settings, "proconnect_issuer", provider.issuer)
    monkeypatch.setattr(settings, "proconnect_client_id", provider.client_id)
    monkeypatch.setattr(settings, "proconnect_client_secret", provider.client_secret)
    proconnect._discovery.clear()
    return provider


def _local(url: str) -> str:
    parsed = urlparse(url)
    return f"{parsed.path}?{parsed.query}" if parsed.query else parsed.path


async def _at_provider(url: str) -> httpx.Response:
    """The browser at the provider (over real HTTP, on loopback)."""
    async with httpx.AsyncClient(timeout=10) as http:
        return await http.get(url)


async def _sign_in(client: httpx.AsyncClient, provider: OidcProvider,
                   identity: dict[str, str]) -> httpx.Response:
    """The browser's round trip: our start → the provider's authorize → our callback."""
    provider.identity = identity
    start = await client.get("/connexion/proconnect")
    assert start.status_code == 303, start.text
    back = await _at_provider(start.headers["location"])
    assert back.status_code == 302, back.text
    return await client.get(_local(back.headers["location"]))


async def test_a_mediator_signs_in_with_proconnect_and_out_at_proconnect_too(
        client, session, app, configured) -> None:
    mediator = await make_actor(session, app, OrganisationKind.site)
    await session.commit()
    answer = await _sign_in(client, configured, {
        "sub": "pc-1", "email": mediator.user.email.upper(), "siret": mediator.org.siret,
        "given_name": "Camille", "usual_name": "Martin"})
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/mediateur"
    assert (await client.get("/mediateur")).status_code == 200
    # The authorisation request carried PKCE (S256), a state and a nonce.
    request = configured.authorize_requests[-1]
    assert request["code_challenge_method"] == "S256" and len(request["code_challenge"]) == 43
    assert request["state"] and request["nonce"] and "siret" in request["scope"].split()

    page = await client.get("/mediateur")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    out = await client.post("/deconnexion", data={"csrf_token": token.group(1)})
    assert out.status_code == 303
    assert out.headers["location"].startswith(f"{configured.issuer}/session/end?")
    hint = parse_qs(urlparse(out.headers["location"]).query)["id_token_hint"][0]
    assert hint.count(".") == 2
    assert (await client.get("/mediateur", follow_redirects=False)).status_code == 303


async def test_an_unknown_siret_gets_a_clear_message_and_a_request_to_the_operator(
        client, session, configured) -> None:
    users = await session.scalar(text("SELECT count(*) FROM app_user"))
    siret = unique_siret()
    answer = await _sign_in(client, configured, {
        "sub": "pc-2", "email": "agent.inconnu@mairie.fr", "siret": siret})
    assert answer.status_code == 403
    assert f"SIRET {siret}" in html.unescape(answer.text)
    assert "demande d'accès a été transmise" in html.unescape(answer.text)
    assert await session.scalar(text(
        "SELECT reason FROM access_request WHERE siret = :s AND email = :e"),
        {"s": siret, "e": "agent.inconnu@mairie.fr"}) == "unknown_siret"
    assert await session.scalar(text("SELECT count(*) FROM app_user")) == users  # none made
    assert (await client.get("/prescripteur", follow_redirects=False)).status_code == 303


async def test_a_known_organisation_without_that_account_creates_no_account(
        client, session, app, configured) -> None:
    agent = await make_actor(session, app, OrganisationKind.issuer)
    await session.commit()
    users = await session.scalar(text("SELECT count(*) FROM app_user"))
    answer = await _sign_in(client, configured, {
        "sub": "pc-3", "email": "nouvelle.collegue@ccas.fr", "siret": agent.org.siret})
    assert answer.status_code == 403 and "aucun compte" in answer.text
    assert await session.scalar(text(
        "SELECT organisation_id FROM access_request WHERE email = 'nouvelle.collegue@ccas.fr'"
    )) == agent.org.id
    assert await session.scalar(text("SELECT count(*) FROM app_user")) == users


async def test_an_operator_account_may_not_use_proconnect(client, session, app,
                                                          configured) -> None:
    operator = await make_actor(session, app, OrganisationKind.operator)
    await session.commit()
    answer = await _sign_in(client, configured, {
        "sub": "pc-4", "email": operator.user.email, "siret": operator.org.siret})
    assert answer.status_code == 403 and "réservée aux agents" in html.unescape(answer.text)


async def test_a_callback_with_a_foreign_state_or_a_replayed_code_opens_nothing(
        client, session, app, configured) -> None:
    mediator = await make_actor(session, app, OrganisationKind.site)
    await session.commit()
    configured.identity = {"sub": "pc-5", "email": mediator.user.email,
                           "siret": mediator.org.siret}
    start = await client.get("/connexion/proconnect")
    back = await _at_provider(start.headers["location"])
    query = parse_qs(urlparse(back.headers["location"]).query)
    forged = await client.get("/connexion/proconnect/retour",
                              params={"code": query["code"][0], "state": "un-autre-etat"})
    assert forged.status_code == 400 and "recommencez" in forged.text
    ok = await client.get(_local(back.headers["location"]))
    assert ok.status_code == 303
    client.cookies.clear()
    replay = await client.get(_local(back.headers["location"]))
    assert replay.status_code == 400  # no flow cookie: not this browser's request


async def test_proconnect_is_off_unless_configured(client) -> None:
    assert (await client.get("/connexion/proconnect")).status_code == 404
    assert "ProConnect" not in (await client.get("/connexion")).text


async def test_the_login_page_offers_proconnect_when_configured(client, configured) -> None:
    assert "S'identifier avec ProConnect" in (await client.get("/connexion")).text


async def test_the_operator_sees_the_requests_and_marks_them_handled(
        client, session, app, configured) -> None:
    siret = unique_siret()
    await _sign_in(client, configured, {"sub": "pc-6", "email": "demande@mairie.fr",
                                        "siret": siret})
    operator = await make_actor(session, app, OrganisationKind.operator)
    listed = await client.get("/api/v1/access-requests", headers=operator.headers)
    assert listed.status_code == 200
    [mine] = [r for r in listed.json() if r["siret"] == siret]
    assert (mine["email"], mine["reason"]) == ("demande@mairie.fr", "unknown_siret")
    mediator = await make_actor(session, app, OrganisationKind.site)
    assert (await client.get("/api/v1/access-requests",
                             headers=mediator.headers)).status_code == 403
    await sso.mark_handled(session, request_id=mine["id"], now=utcnow())
    again = await client.get("/api/v1/access-requests", headers=operator.headers)
    assert siret not in [r["siret"] for r in again.json()]
