"""The public pages answer without login: /lieux finds sites by postcode, a site has its page,
/mon-pass shows what is left with the right code and one generic message otherwise."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from tests.api.test_issuance_api import World, make_world


async def test_the_directory_pages_find_a_site_by_postcode(
    client: httpx.AsyncClient, session: AsyncSession, app: Any
) -> None:
    world: World = await make_world(session, app)
    await client.patch(
        f"/api/v1/sites/{world.site.org.id}/profile",
        json={"horaires": "24/7", "services": ["creer_courriel"]},
        headers=world.site.headers,
    )
    page = await client.get("/lieux", params={"q": "35000"})
    assert page.status_code == 200
    assert "Lieux les plus proches de Rennes (35)" in page.text
    assert world.site.org.name.replace("'", "&#39;") in page.text
    assert "Ouvert maintenant" in page.text
    own = await client.get(f"/lieux/{world.site.org.id}")
    assert own.status_code == 200 and "Créer et utiliser une adresse e-mail" in own.text
    assert (await client.get("/lieux/999999999")).status_code == 404
    none = await client.get("/lieux", params={"q": "qwxz"})
    assert "Aucune commune ne correspond" in none.text

    booklet = world.active_booklet
    code = (
        await client.get(f"/api/v1/booklets/{booklet.id}", headers=world.issuer.headers)
    ).json()["check_code"]
    mine = await client.get(f"/mon-pass/{booklet.number}", params={"code": code})
    assert "Il vous reste <strong>5 chèques</strong>" in mine.text
    wrong = await client.get(f"/mon-pass/{booklet.number}", params={"code": "ZZZZZZ"})
    assert "Nous ne trouvons pas ce carnet avec ce code" in wrong.text
    assert "Il vous reste" not in wrong.text
    form = await client.get("/mon-pass", params={"numero": booklet.number, "code": code})
    assert form.status_code == 303 and form.headers["location"].startswith(
        f"/mon-pass/{booklet.number}?code="
    )


async def test_a_mediator_edits_the_profile_page_and_the_operator_checks_it(
    client: httpx.AsyncClient, session: AsyncSession, app: Any
) -> None:
    import re

    from api.deps import COOKIE_NAME
    from pass_.enums import OrganisationKind
    from pass_.models import Organisation
    from tests.factories import make_actor

    mediator = await make_actor(session, app, OrganisationKind.site, commune_insee="35001")
    client.cookies.set(COOKIE_NAME, mediator.headers["Authorization"][7:])
    page = await client.get("/mediateur/profil")
    assert page.status_code == 200 and "Acigné (35)" in page.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    form = {
        "csrf_token": token,
        "adresse": "1 place de la Mairie",
        "code_postal": "35690",
        "horaires": "Mo-Fr 09:00-12:00",
        "etapes": "Marché ; Rue du Marché, Acigné ; Sa 09:00-12:0x",
        "services": ["creer_courriel", "naviguer_web"],
        "telephone": "02 99 00 00 00",
    }
    bad = await client.post("/mediateur/profil", data=form)
    assert bad.status_code == 400
    assert "caractère" in bad.text and "Sa 09:00-12:0x" in bad.text  # kept, error shown
    form["etapes"] = "Marché ; Rue du Marché, Acigné ; Sa 09:00-12:00"
    ok = await client.post("/mediateur/profil", data=form)
    assert ok.status_code == 303
    org = await session.get(Organisation, mediator.org.id)
    await session.refresh(org)
    assert org is not None and org.opening_hours == "Mo-Fr 09:00-12:00"
    assert org.stops[0]["horaires"] == "Sa 09:00-12:00" and org.phone == "+33299000000"

    operator = await make_actor(session, app, OrganisationKind.operator)
    client.cookies.set(COOKIE_NAME, operator.headers["Authorization"][7:])
    listing = await client.get("/operateur/profils")
    assert mediator.org.name in listing.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', listing.text).group(1)  # type: ignore[union-attr]
    done = await client.post(
        f"/operateur/profils/{mediator.org.id}/verifie", data={"csrf_token": token}
    )
    assert done.status_code == 303
    after = (await client.get("/operateur/profils")).text
    assert f"/operateur/profils/{mediator.org.id}/verifie" not in after  # checked: off the list
    stock = await client.get("/operateur/stock")
    assert stock.status_code == 200 and "Fin de validité" in stock.text
