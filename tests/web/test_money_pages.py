"""The operator's money pages without a browser: close a batch, download its SEPA file, record
a financer's transfer, run the expiry; sites and financers read only their own statements."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import COOKIE_NAME
from kit.clock import utcnow
from pass_ import redemption
from pass_.enums import OrganisationKind, Service
from pass_.tokens import Keyring
from tests.factories import make_actor
from tests.pass_.redemption_factories import make_scene, make_site


@pytest.fixture(scope="module")
def keyring(tmp_path_factory: pytest.TempPathFactory) -> Keyring:
    return Keyring.load_or_create(tmp_path_factory.mktemp("keys"))


async def _as(client: Any, actor: Any) -> str:
    """Sign the client in as `actor` (cookie) and return the page's CSRF token."""
    client.cookies.clear()
    client.cookies.set(COOKIE_NAME, actor.headers["Authorization"][7:])
    page = await client.get("/connexion?raison=requise")
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match
    return match.group(1)


async def test_batch_sepa_transfer_and_expiry_pages(
    client: Any, session: AsyncSession, app: Any, keyring: Keyring
) -> None:
    scene = await make_scene(session, keyring, cheques=2)
    site = await make_site(session, app)
    for cheque in scene.cheques:
        await redemption.redeem_cheque(
            session, keyring=keyring, site_id=site.org.id, user_id=site.id,  # type: ignore[arg-type]
            code=cheque.serial, service=Service.naviguer_web, demarche_family=None, now=utcnow(),
        )  # fmt: skip
    operator = await make_actor(session, app, OrganisationKind.operator)
    token = await _as(client, operator)

    preview = await client.post(
        "/operateur/compensation", data={"choix": "maintenant", "csrf_token": token}
    )
    assert preview.status_code == 200 and "Aperçu du lot" in preview.text
    cutoff = re.search(r'name="arrete" value="([^"]+)"', preview.text)
    assert cutoff
    closed = await client.post(
        "/operateur/compensation",
        data={"etape": "clore", "arrete": cutoff.group(1), "csrf_token": token},
    )
    assert closed.status_code == 303
    batch_url = closed.headers["location"]
    batch = await client.get(batch_url)
    assert site.org.name in batch.text and "20,00" in batch.text

    sepa = await client.post(f"{batch_url}/sepa", data={"csrf_token": token})
    assert sepa.status_code == 200 and sepa.headers["content-type"] == "application/xml"
    assert b"pain.001.001.03" in sepa.content and site.org.iban.encode() in sepa.content  # type: ignore[union-attr]

    ids = re.findall(r'href="/operateur/releves/(\d+)"', batch.text)
    financer_page = None
    for statement_id in ids:
        page = await client.get(f"/operateur/releves/{statement_id}")
        if scene.funded.local.name in page.text:  # the département's statement
            financer_page, financer_statement = page, statement_id
    assert financer_page is not None and "Enregistrer un virement" in financer_page.text
    wrong = await client.post(
        f"/operateur/releves/{financer_statement}/virement",
        data={"reference": "VIR-1", "amount": "1", "received_on": "2026-02-03",
              "csrf_token": token},
    )  # fmt: skip
    assert wrong.status_code == 400 and "fr-error-text" in wrong.text
    paid = await client.post(
        f"/operateur/releves/{financer_statement}/virement",
        data={"reference": "VIR-1", "amount": "10", "received_on": "2026-02-03",
              "csrf_token": token},
    )  # fmt: skip
    assert paid.status_code == 303
    assert "Réglé" in (await client.get(paid.headers["location"])).text

    expiry = await client.post(
        "/operateur/expiration", data={"csrf_token": token, "confirmer": "oui"}
    )
    assert expiry.status_code == 200 and "Expiration du" in expiry.text

    # The site reads its own statement; another site gets "not found".
    await _as(client, site)
    own = await client.get("/mediateur/releves")
    site_statement = re.search(r'href="/mediateur/releves/(\d+)"', own.text)
    assert site_statement and "20,00" in own.text
    other = await make_site(session, app)
    await _as(client, other)
    assert (await client.get(f"/mediateur/releves/{site_statement.group(1)}")).status_code == 404
