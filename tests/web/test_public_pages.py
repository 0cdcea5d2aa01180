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
