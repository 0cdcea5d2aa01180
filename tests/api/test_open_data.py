"""Open data of redemptions: counts and value by month × commune × démarche × service, cells
under 11 redemptions suppressed, the rule written in the file, no beneficiary data, no login."""

from __future__ import annotations

import csv
import io
from datetime import datetime

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from pass_.enums import OrganisationKind
from pass_.models import Redemption
from tests.factories import make_org


async def test_open_data_suppresses_small_cells_and_says_why(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    site = await make_org(session, OrganisationKind.site, commune_insee="29019")  # Brest
    at = datetime.fromisoformat("2026-03-31T23:30:00+00:00")  # 1 April in Paris
    rows = [("creer_courriel", "caf")] * 12 + [("naviguer_web", None)] * 3
    for i, (service, family) in enumerate(rows):
        session.add(
            Redemption(
                cheque_id=900_000 + i,
                programme_id=1,
                site_id=site.id,
                value_cents=1000,
                service=service,
                demarche_family=family,
                redeemed_at=at,
            )
        )
    reversed_ = Redemption(
        cheque_id=900_100,
        programme_id=1,
        site_id=site.id,
        value_cents=1000,
        service="creer_courriel",
        demarche_family="caf",
        redeemed_at=at,
        reversed_at=at,
    )
    session.add(reversed_)
    await session.flush()

    r = await client.get("/api/v1/open-data/redemptions.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    text_ = r.text.lstrip("\ufeff")
    doc = [line for line in text_.splitlines() if line.startswith("#")]
    assert any("Licence Ouverte" in line and "2.0" in line for line in doc)
    assert any("moins de 11 encaissements" in line for line in doc)
    data = [line for line in text_.splitlines() if not line.startswith("#")]
    table = list(csv.DictReader(io.StringIO("\n".join(data)), delimiter=";"))
    mine = {
        (row["service"], row["famille_demarche"]): row
        for row in table
        if row["code_insee"] == "29019"
    }
    visible = mine[("creer_courriel", "caf")]
    assert visible["mois"] == "2026-04" and visible["commune"] == "Brest"
    assert visible["encaissements"] == "12" and visible["valeur_euros"] == "120,00"
    assert visible["secret_statistique"] == "non"
    hidden = mine[("naviguer_web", "sans_demarche")]
    assert hidden["encaissements"] == "" and hidden["valeur_euros"] == ""
    assert hidden["secret_statistique"] == "oui"
    header = data[0].split(";")
    assert not any(
        word in col for col in header for word in ("benef", "carnet", "cheque", "serial")
    )


async def test_the_open_data_page_links_the_files(client: httpx.AsyncClient) -> None:
    page = await client.get("/donnees")
    assert page.status_code == 200
    assert "/api/v1/open-data/redemptions.csv" in page.text
    assert "Licence Ouverte 2.0" in page.text
