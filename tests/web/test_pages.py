"""Pages without a browser: session cookie, role homes, CSRF on forms and on cookie JSON calls,
session expiry, static files."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import COOKIE_NAME
from api.web.csrf import COOKIE as CSRF_COOKIE
from pass_ import accounts
from pass_.enums import OrganisationKind
from tests.factories import bearer, make_actor, unique_siret

PASSWORD = "motdepasse-solide-42"
HOMES = {
    OrganisationKind.operator: "/operateur",
    OrganisationKind.issuer: "/prescripteur",
    OrganisationKind.site: "/mediateur",
    OrganisationKind.financer: "/financeur",
}


async def _csrf(client: Any) -> str:
    page = await client.get("/connexion?raison=requise")  # shown even when signed in
    assert page.status_code == 200
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, "the login form carries a CSRF token"
    return match.group(1)


async def _login(client: Any, email: str, password: str = PASSWORD) -> Any:
    token = await _csrf(client)
    return await client.post(
        "/connexion", data={"email": email, "password": password, "csrf_token": token}
    )


@pytest.mark.parametrize("kind", list(HOMES))
async def test_each_role_lands_on_its_home_with_an_httponly_lax_session_cookie(
    client: Any, session: AsyncSession, app: Any, kind: OrganisationKind
) -> None:
    actor = await make_actor(session, app, kind)
    answer = await _login(client, actor.user.email)
    assert answer.status_code == 303
    assert answer.headers["location"] == HOMES[kind]
    cookie = next(h for h in answer.headers.get_list("set-cookie") if h.startswith(COOKIE_NAME))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Max-Age=" in cookie
    home = await client.get(HOMES[kind])
    assert home.status_code == 200
    assert '<html lang="fr"' in home.text and "<title>" in home.text


async def test_a_wrong_password_is_refused_in_french_without_a_session(
    client: Any, session: AsyncSession, app: Any
) -> None:
    actor = await make_actor(session, app, OrganisationKind.site)
    answer = await _login(client, actor.user.email, "pas-le-bon-mot-de-passe")
    assert answer.status_code == 401
    assert "Adresse e-mail ou mot de passe incorrect" in answer.text
    assert COOKIE_NAME not in client.cookies


async def test_a_form_posted_without_its_csrf_token_is_refused(
    client: Any, session: AsyncSession, app: Any
) -> None:
    actor = await make_actor(session, app, OrganisationKind.operator)
    client.cookies.set(COOKIE_NAME, actor.headers["Authorization"][7:])
    await _csrf(client)  # the CSRF cookie exists, but the form does not echo it
    answer = await client.post(
        "/operateur/organisations/nouvelle",
        data={"kind": "issuer", "name": "CCAS Sans Jeton", "siret": unique_siret(),
              "commune_insee": "35238"},
    )  # fmt: skip
    assert answer.status_code == 303
    names = [o.name for o in await accounts.list_organisations(session)]
    assert "CCAS Sans Jeton" not in names
    flash = await client.get(answer.headers["location"], follow_redirects=True)
    assert "La page a expiré" in flash.text


async def test_a_form_with_its_csrf_token_goes_through(
    client: Any, session: AsyncSession, app: Any
) -> None:
    actor = await make_actor(session, app, OrganisationKind.operator)
    client.cookies.set(COOKIE_NAME, actor.headers["Authorization"][7:])
    token = await _csrf(client)
    answer = await client.post(
        "/operateur/organisations/nouvelle",
        data={"kind": "issuer", "name": "CCAS Avec Jeton", "siret": unique_siret(),
              "commune_insee": "35238", "csrf_token": token},
    )  # fmt: skip
    assert answer.status_code == 303, answer.text
    names = [o.name for o in await accounts.list_organisations(session)]
    assert "CCAS Avec Jeton" in names


async def test_cookie_authenticated_json_posts_need_the_csrf_header(
    client: Any, session: AsyncSession, app: Any
) -> None:
    actor = await make_actor(session, app, OrganisationKind.operator)
    client.cookies.set(COOKIE_NAME, actor.headers["Authorization"][7:])
    token = await _csrf(client)
    body = {
        "kind": "issuer",
        "name": "CCAS JSON",
        "siret": unique_siret(),
        "commune_insee": "35238",
    }
    refused = await client.post("/api/v1/organisations", json=body)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "csrf_failed"
    accepted = await client.post(
        "/api/v1/organisations", json=body, headers={"X-CSRF-Token": token}
    )
    assert accepted.status_code == 201, accepted.text
    # Bearer clients (scripts, the API's users) are not concerned.
    client.cookies.clear()
    other = {**body, "siret": unique_siret(), "name": "CCAS Bearer"}
    assert (
        await client.post("/api/v1/organisations", json=other, headers=actor.headers)
    ).status_code == 201


async def test_an_expired_session_goes_back_to_login_with_a_french_message(
    client: Any, session: AsyncSession, app: Any
) -> None:
    actor = await make_actor(session, app, OrganisationKind.issuer)
    expired = bearer(app.state.jwt_secret, actor.user, minutes=-1)["Authorization"][7:]
    client.cookies.set(COOKIE_NAME, expired)
    answer = await client.get("/prescripteur/carnets")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/connexion?raison=expiree&suite=/prescripteur/carnets"
    login = await client.get(answer.headers["location"])
    assert "Votre session a expiré" in login.text


async def test_a_page_of_another_role_sends_back_home(
    client: Any, session: AsyncSession, app: Any
) -> None:
    actor = await make_actor(session, app, OrganisationKind.site)
    client.cookies.set(COOKIE_NAME, actor.headers["Authorization"][7:])
    answer = await client.get("/operateur/organisations")
    assert answer.status_code == 303 and answer.headers["location"] == "/mediateur"


async def test_static_files_come_from_node_modules_and_never_from_outside_their_folder(
    client: Any,
) -> None:
    css = await client.get("/static/vendor/dsfr/dsfr.min.css")
    assert css.status_code == 200 and "max-age" in css.headers["cache-control"]
    assert (await client.get("/static/vendor/jsqr/jsQR.js")).status_code == 200
    sw = await client.get("/mediateur/sw.js")
    assert sw.headers["service-worker-allowed"] == "/mediateur"
    for path in ("/static/..%2f..%2fpyproject.toml", "/static/vendor/dsfr/..%2f..%2fpackage.json"):
        assert (await client.get(path)).status_code == 404
    assert CSRF_COOKIE  # the name the scan page's script reads


async def test_the_login_page_is_throttled_like_the_token_endpoint(
    settings: Any, engine: Any
) -> None:
    import httpx

    from api.app import create_app

    strict = settings.model_copy(update={"login_failure_burst": 2, "login_failures_per_minute": 1})
    application = create_app(strict, engine=engine, run_sealer=False)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            statuses = []
            for _ in range(3):
                token = await _csrf(client)
                answer = await client.post(
                    "/connexion",
                    data={"email": "personne@exemple.fr", "password": "mauvais-mot-de-passe",
                          "csrf_token": token},
                )  # fmt: skip
                statuses.append(answer.status_code)
            assert statuses == [401, 401, 429]
            assert "Trop de tentatives de connexion" in answer.text
