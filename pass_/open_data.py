"""Open data of redemptions: month × commune of the site × démarche family × service, with the
count and the value; cells of fewer than 11 redemptions are suppressed (statistical secrecy).
No beneficiary data at all: the rows come from the redemption table only (site, date, value,
service, démarche), grouped; the file publishes no totals, so a suppressed cell cannot be
recovered by subtraction."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from pass_ import communes
from pass_.enums import demarche_label, label

SECRECY_THRESHOLD = 11
NO_DEMARCHE = "sans_demarche"

HEADER_DOC = [
    "Pass numérique — encaissements de chèques par mois, commune du lieu de médiation, "
    "famille de démarches et service.",
    "Licence : Licence Ouverte / Open Licence version 2.0 (Etalab).",
    "Mois : mois de l'encaissement, heure de Paris. Commune : celle du lieu qui a encaissé "
    "(code officiel géographique de l'INSEE).",
    f"Secret statistique : toute case de moins de {SECRECY_THRESHOLD} encaissements est "
    "masquée (nombre et valeur vides, secret_statistique = oui). Le fichier ne publie aucun "
    "total, si bien qu'une case masquée ne peut pas être déduite des autres.",
    "Aucune donnée sur les bénéficiaires : ni personne, ni carnet, ni chèque.",
    "Valeurs en euros, virgule décimale ; séparateur point-virgule ; encodage UTF-8.",
]
COLUMNS = [
    "mois",
    "code_insee",
    "commune",
    "famille_demarche",
    "famille_demarche_libelle",
    "service",
    "service_libelle",
    "encaissements",
    "valeur_euros",
    "secret_statistique",
]


@dataclass(frozen=True)
class Cell:
    month: str  # YYYY-MM
    commune_insee: str
    demarche_family: str | None
    service: str
    count: int
    value_cents: int

    @property
    def secret(self) -> bool:
        return self.count < SECRECY_THRESHOLD


_CELLS = text("""
SELECT to_char(r.redeemed_at AT TIME ZONE 'Europe/Paris', 'YYYY-MM') AS month,
       o.commune_insee, r.demarche_family, r.service, count(*), sum(r.value_cents)
FROM redemption r JOIN organisation o ON o.id = r.site_id
WHERE r.reversed_at IS NULL
GROUP BY 1, 2, 3, 4
ORDER BY 1, 2, 3 NULLS LAST, 4
""")


async def cells(session: AsyncSession) -> list[Cell]:
    rows = (await session.execute(_CELLS)).all()
    return [Cell(m, c, d, s, int(n), int(v)) for m, c, d, s, n, v in rows]


def _euros(cents: int) -> str:
    return f"{cents // 100},{cents % 100:02d}"


async def redemptions_csv(session: AsyncSession) -> str:
    """The file: documentation lines (starting with #), the header row, one row per cell."""
    found = await cells(session)
    names = await communes.names(session, (c.commune_insee for c in found))
    out = io.StringIO()
    for line in HEADER_DOC:
        out.write(f"# {line}\n")
    writer = csv.writer(out, delimiter=";", lineterminator="\n")
    writer.writerow(COLUMNS)
    for c in found:
        family = c.demarche_family or NO_DEMARCHE
        writer.writerow(
            [
                c.month,
                c.commune_insee,
                names.get(c.commune_insee, ""),
                family,
                demarche_label(c.demarche_family),
                c.service,
                label(c.service),
                "" if c.secret else c.count,
                "" if c.secret else _euros(c.value_cents),
                "oui" if c.secret else "non",
            ]
        )
    return out.getvalue()
