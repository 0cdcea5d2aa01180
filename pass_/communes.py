"""The commune reference: INSEE code → name, postcodes, département and centre.

Read from the dataset shipped in the npm package `@etalab/decoupage-administratif` (INSEE's
Code officiel géographique with La Poste's postcodes; Licence Ouverte), loaded into the
`commune` table by `passnum load-communes` with one COPY (about 35,000 communes), never fetched
at run time. No version of that package carries commune centres (checked from 0.9 to 6.0), so
centres come from a `code;latitude;longitude` file: `pass_/data/commune_centres.csv` ships
those of the demo territory, and `passnum load-communes --centres FILE` takes any other (for
example IGN's or La Poste's published centres). A commune without a centre is still found by
name or postcode; the directory then orders its sites by commune and name instead of distance.
"""

from __future__ import annotations

import csv
import json
import math
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

_DATASET = Path("node_modules") / "@etalab" / "decoupage-administratif" / "data" / "communes.json"
# The project's own node_modules (a checkout), else the working directory's (an installed app
# started from its folder, as the Dockerfile does).
REFERENCE = next(
    (
        p
        for p in (Path(__file__).resolve().parent.parent / _DATASET, Path.cwd() / _DATASET)
        if p.exists()
    ),
    Path(__file__).resolve().parent.parent / _DATASET,
)
CENTRES = Path(__file__).resolve().parent / "data" / "commune_centres.csv"

_SPACES = re.compile(r"[\s\-'’]+")
_POSTCODE = re.compile(r"^[0-9]{5}$|^2[AB][0-9]{3}$")


@dataclass(frozen=True, slots=True)
class CommuneRow:
    code: str
    name: str
    departement: str
    postcodes: list[str]
    population: int | None = None
    latitude: float | None = None
    longitude: float | None = None

    @property
    def search_name(self) -> str:
        return search_key(self.name)


@dataclass(frozen=True, slots=True)
class CommuneRef:
    code: str
    name: str
    departement: str
    postcodes: list[str]
    latitude: float | None
    longitude: float | None

    @property
    def label(self) -> str:
        """« Rennes (35) »: the name with the département tells homonyms apart."""
        return f"{self.name} ({self.departement})"


def search_key(text_: str) -> str:
    """Lower case, no accents, hyphens and apostrophes as spaces, « St » as « saint »."""
    decomposed = unicodedata.normalize("NFKD", text_)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).lower()
    plain = _SPACES.sub(" ", plain).strip()
    plain = re.sub(r"^ste? ", lambda m: "sainte " if m.group(0) == "ste " else "saint ", plain)
    return plain[:100]


def read_reference(
    path: Path = REFERENCE, centres: Sequence[Path] = (CENTRES,)
) -> list[CommuneRow]:
    """The current communes of the dataset (not the delegated or associated ones, whose codes
    no longer name a commune), with the centres of the given files."""
    if not path.exists():
        raise FileNotFoundError(
            f"{path} est introuvable : installez les paquets npm du projet (npm ci)."
        )
    where: dict[str, tuple[float, float]] = {}
    for file in centres:
        where.update(read_centres(file))
    rows = []
    for item in json.loads(path.read_text(encoding="utf-8")):
        if item.get("type") != "commune-actuelle":
            continue
        code = item["code"]
        lat, lon = where.get(code, (None, None))
        rows.append(
            CommuneRow(
                code=code,
                name=item["nom"],
                departement=item["departement"],
                postcodes=sorted(set(item.get("codesPostaux") or [])),
                population=item.get("population"),
                latitude=lat,
                longitude=lon,
            )
        )
    return rows


def read_centres(path: Path) -> dict[str, tuple[float, float]]:
    """`code;latitude;longitude` lines (a header line first), WGS 84 degrees."""
    out: dict[str, tuple[float, float]] = {}
    with path.open(encoding="utf-8-sig", newline="") as f:
        for row in csv.DictReader(f, delimiter=";"):
            lat, lon = float(row["latitude"]), float(row["longitude"])
            if not (-90 <= lat <= 90 and -180 <= lon <= 180):
                raise ValueError(f"coordonnées hors limites pour {row['code']} : {lat}, {lon}")
            out[row["code"].strip().upper()] = (lat, lon)
    return out


_UPSERT = text("""
INSERT INTO commune (code, name, search_name, departement, postcodes, population, latitude,
                     longitude)
SELECT code, name, search_name, departement, postcodes, population, latitude, longitude
FROM commune_load
ON CONFLICT (code) DO UPDATE SET
    name = EXCLUDED.name, search_name = EXCLUDED.search_name,
    departement = EXCLUDED.departement, postcodes = EXCLUDED.postcodes,
    population = EXCLUDED.population,
    latitude = coalesce(EXCLUDED.latitude, commune.latitude),
    longitude = coalesce(EXCLUDED.longitude, commune.longitude)
""")


async def load_communes(session: AsyncSession, rows: Iterable[CommuneRow]) -> int:
    """Insert or update the communes in one COPY and one statement (idempotent: loading the
    same reference again changes nothing; a centre already known is kept when the new
    reference has none). Returns the number of communes read."""
    records = [
        (
            r.code,
            r.name[:100],
            r.search_name,
            r.departement,
            r.postcodes,
            r.population,
            r.latitude,
            r.longitude,
        )
        for r in rows
    ]
    conn = await session.connection()
    await conn.execute(
        text(
            "CREATE TEMP TABLE IF NOT EXISTS commune_load "
            "(LIKE commune INCLUDING DEFAULTS) ON COMMIT DROP"
        )
    )
    await conn.execute(text("TRUNCATE commune_load"))
    raw = await conn.get_raw_connection()
    await raw.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
        "commune_load",
        records=records,
        columns=[
            "code",
            "name",
            "search_name",
            "departement",
            "postcodes",
            "population",
            "latitude",
            "longitude",
        ],
    )
    await conn.execute(_UPSERT)
    await conn.execute(text("DROP TABLE commune_load"))
    return len(records)


_COLUMNS = "code, name, departement, postcodes, latitude, longitude"


def _ref(row: Sequence[object]) -> CommuneRef:
    return CommuneRef(*row)  # type: ignore[arg-type]


async def get_commune(session: AsyncSession, code: str) -> CommuneRef | None:
    row = (
        await session.execute(
            text(f"SELECT {_COLUMNS} FROM commune WHERE code = :code"), {"code": code.upper()}
        )
    ).first()
    return _ref(row) if row else None


async def search(session: AsyncSession, query: str, *, limit: int = 10) -> list[CommuneRef]:
    """Communes matching what a person typed: a postcode (every commune it serves), an INSEE
    code, or the beginning of a name (accents, case and hyphens ignored); exact names first,
    then the most populated."""
    q = (query or "").strip()
    if not q or len(q) > 100:
        return []
    if _POSTCODE.match(q.upper()):
        rows = await session.execute(
            text(
                f"SELECT {_COLUMNS} FROM commune WHERE :q = ANY(postcodes) OR code = :q "
                "ORDER BY population DESC NULLS LAST, name LIMIT :limit"
            ),
            {"q": q.upper(), "limit": limit},
        )
        return [_ref(r) for r in rows.all()]
    key = search_key(q)
    if len(key) < 2:
        return []
    like = key.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    rows = await session.execute(
        text(
            f"SELECT {_COLUMNS} FROM commune WHERE search_name LIKE :like "
            "ORDER BY search_name = :key DESC, population DESC NULLS LAST, name LIMIT :limit"
        ),
        {"like": like, "key": key, "limit": limit},
    )
    return [_ref(r) for r in rows.all()]


async def names(session: AsyncSession, codes: Iterable[str | None]) -> dict[str, str]:
    """code → name for the codes the reference knows (a code it does not know is left out: the
    caller shows the code itself)."""
    wanted = sorted({c for c in codes if c})
    if not wanted:
        return {}
    rows = await session.execute(
        text("SELECT code, name FROM commune WHERE code = ANY(:codes)"), {"codes": wanted}
    )
    return {code: name for code, name in rows.all()}


async def count(session: AsyncSession) -> int:
    return int((await session.execute(text("SELECT count(*) FROM commune"))).scalar_one())


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine, mean Earth radius 6,371 km)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(a))


_CHOSEN = re.compile(r"·\s*([0-9][0-9AB][0-9]{3})\s*$", re.IGNORECASE)


async def resolve(session: AsyncSession, typed: str | None, *, field: str) -> str | None:
    """The INSEE code of the commune a person picked or typed in a form: « Rennes (35) ·
    35238 » (what the suggestion list offers), a name, a postcode or an INSEE code. None when
    empty; InvalidInput naming the candidates when several communes fit, or none."""
    from kit.errors import InvalidInput

    text_ = (typed or "").strip()
    if not text_:
        return None
    chosen = _CHOSEN.search(text_)
    if chosen:
        commune = await get_commune(session, chosen.group(1))
        if commune is not None:
            return commune.code
    found = await search(session, text_, limit=6)
    key = search_key(text_)
    exact = [c for c in found if search_key(c.name) == key or c.code == text_.upper()]
    if _POSTCODE.match(text_.upper()) and len(found) == 1:
        return found[0].code
    if len(exact) == 1:
        return exact[0].code
    candidates = exact or found
    if not candidates:
        raise InvalidInput(
            f"Aucune commune ne correspond à « {text_} » : écrivez son nom ou son code postal.",
            code="unknown_commune",
            field=field,
        )
    listed = ", ".join(f"{c.name} ({c.departement})" for c in candidates[:5])
    raise InvalidInput(
        f"Plusieurs communes correspondent à « {text_} » : {listed}. Choisissez-la dans la "
        "liste proposée, ou écrivez aussi son code postal.",
        code="ambiguous_commune",
        field=field,
        candidates=[c.code for c in candidates[:5]],
    )
