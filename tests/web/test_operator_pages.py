"""The operator's organisation page, rendered by the real app without a browser."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import COOKIE_NAME
from pass_.enums import OrganisationKind
from tests.factories import make_actor, make_org


def _rows(page: str) -> list[list[str]]:
    """The cells of the users table, row by row, tags stripped."""
    table = re.search(r'<table id="utilisateurs">.*?</table>', page, re.S)
    assert table, "the page has a users table"
    body = table.group(0).split("<tbody>", 1)[1]
    return [
        [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td>(.*?)</td>", row, re.S)]
        for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)
    ]


async def test_the_organisation_page_lists_its_users_with_role_label_and_state(
    client: Any, session: AsyncSession, app: Any
) -> None:
    operator = await make_actor(session, app, OrganisationKind.operator)
    issuer = await make_org(session, OrganisationKind.issuer, name="CCAS de Test")
    active = await make_actor(session, app, OrganisationKind.issuer, org=issuer)
    inactive = await make_actor(session, app, OrganisationKind.issuer, org=issuer)
    stranger = await make_actor(session, app, OrganisationKind.issuer)
    inactive.user.is_active = False
    await session.flush()
    client.cookies.set(COOKIE_NAME, operator.headers["Authorization"][7:])

    page = await client.get(f"/operateur/organisations/{issuer.id}")

    assert page.status_code == 200, page.text
    rows = sorted(_rows(page.text))
    assert rows == sorted(
        [
            [active.user.email, "Agent prescripteur", "Oui"],
            [inactive.user.email, "Agent prescripteur", "Non"],
        ]
    )
    assert stranger.user.email not in page.text


async def test_an_organisation_without_users_says_so(
    client: Any, session: AsyncSession, app: Any
) -> None:
    operator = await make_actor(session, app, OrganisationKind.operator)
    site = await make_org(session, OrganisationKind.site)
    client.cookies.set(COOKIE_NAME, operator.headers["Authorization"][7:])
    page = await client.get(f"/operateur/organisations/{site.id}")
    assert page.status_code == 200, page.text
    assert "Aucun compte pour l'instant." in page.text
    assert 'id="utilisateurs"' not in page.text


async def test_another_role_does_not_see_an_organisation_s_users(
    client: Any, session: AsyncSession, app: Any
) -> None:
    agent = await make_actor(session, app, OrganisationKind.issuer)
    client.cookies.set(COOKIE_NAME, agent.headers["Authorization"][7:])
    page = await client.get(f"/operateur/organisations/{agent.org.id}")
    assert page.status_code == 303 and page.headers["location"] == "/prescripteur"
    home = await client.get(page.headers["location"])
    assert home.status_code == 200 and 'id="utilisateurs"' not in home.text
