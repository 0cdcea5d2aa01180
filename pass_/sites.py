"""Sites describe themselves (address, coordinates, opening hours, services, accessibility,
contacts), the operator checks them, and qualified sites are published: the directory /lieux,
its JSON, and the national data standard of *lieux de médiation numérique* (CSV).

Opening hours are in OpenStreetMap's `opening_hours` syntax, parsed by the `opening_hours`
library (opening-hours-py); « ouvert maintenant » is computed from them in Europe/Paris with
French public holidays. An itinerant site (a bus, a mediator on the road) lists its stops,
each with a place, an address and hours of its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from typing import Any

import opening_hours
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from kit.clock import PARIS
from kit.errors import Forbidden, InvalidInput, NotFound
from pass_ import communes
from pass_.communes import CommuneRef
from pass_.enums import OrganisationKind, Qualification, Role, Service, label
from pass_.errors import NotASite
from pass_.models import Organisation

MAX_STOPS = 30
_POSITION = re.compile(r"-->\s*(\d+):(\d+)")
_EXPECTED = re.compile(r"=\s*expected (.+)$", re.MULTILINE)
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
_URL = re.compile(r"^https?://[^\s/$.?#][^\s]*$", re.IGNORECASE)
_POSTCODE = re.compile(r"^[0-9]{5}$")

# Our six services → the data standard's vocabulary (`services`, v1.0.2).
STANDARD_SERVICES: dict[str, str] = {
    Service.creer_courriel: "Maîtrise des outils numériques du quotidien",
    Service.naviguer_web: "Maîtrise des outils numériques du quotidien",
    Service.ecrire_document: "Maîtrise des outils numériques du quotidien",
    Service.acceder_services_en_ligne: "Aide aux démarches administratives",
    Service.connaitre_ses_droits: "Aide aux démarches administratives",
    Service.realiser_demarche: "Aide aux démarches administratives",
}
# The standard's `frais_a_charge` (v1.0.2) has three values; a session paid by a Pass numérique
# cheque is free for the person, on that condition. The Pass numérique itself is named in
# `presentation_resume` (its value « Accepte le Pass numérique » existed in a 2022 draft only).
FRAIS_A_CHARGE = "Gratuit sous condition"
PASS_NUMERIQUE = "Accepte le Pass numérique : séances gratuites sur remise d'un chèque."


# --------------------------------------------------------------------------- opening hours


def validate_opening_hours(value: str | None, *, field_name: str = "horaires") -> str | None:
    """The expression, trimmed, or InvalidInput naming the position (1-based column) of the
    first error and what was expected there."""
    if value is None or not value.strip():
        return None
    expr = " ".join(value.split())
    if len(expr) > 500:
        raise InvalidInput(
            "Les horaires sont trop longs (500 caractères au plus).",
            code="invalid_opening_hours",
            field=field_name,
        )
    try:
        opening_hours.OpeningHours(expr)
    except (opening_hours.ParserError, SyntaxError, ValueError) as exc:  # type: ignore[attr-defined]
        text_ = str(exc)
        match = _POSITION.search(text_)
        column = int(match.group(2)) if match else 1
        expected = _EXPECTED.search(text_)
        raise InvalidInput(
            f"Horaires illisibles au caractère {column} (« {expr[column - 1 : column + 9]} ») : "
            "écrivez-les au format OpenStreetMap, par exemple « Mo-Fr 09:00-12:00,14:00-17:30; "
            "Sa 09:00-12:00 » (Mo lundi, Tu mardi, We mercredi, Th jeudi, Fr vendredi, "
            "Sa samedi, Su dimanche).",
            code="invalid_opening_hours",
            field=field_name,
            position=column,
            expected=expected.group(1).strip() if expected else None,
        ) from None
    return expr


@lru_cache(maxsize=4096)
def _hours(expr: str) -> opening_hours.OpeningHours:
    return opening_hours.OpeningHours(expr, country="FR")


def is_open(expr: str | None, at: datetime) -> bool | None:
    """Open at `at` (any time zone; read in Europe/Paris), or None when the hours are unknown."""
    if not expr:
        return None
    local = at.astimezone(PARIS).replace(tzinfo=None)
    try:
        return bool(_hours(expr).is_open(local))
    except Exception:  # noqa: BLE001 — hours stored before a library change: unknown, not an error
        return None


def next_opening(expr: str | None, at: datetime) -> datetime | None:
    if not expr:
        return None
    local = at.astimezone(PARIS).replace(tzinfo=None)
    try:
        hours = _hours(expr)
        if hours.is_open(local):
            return None
        change = hours.next_change(local)
    except Exception:  # noqa: BLE001
        return None
    return change.replace(tzinfo=PARIS) if change else None


# --------------------------------------------------------------------------- profile input


def normalise_phone(value: str | None) -> str | None:
    """A French number as the data standard writes it: +33 then 9 digits (overseas prefixes
    kept)."""
    if value is None or not value.strip():
        return None
    digits = re.sub(r"[\s.\-()]", "", value)
    if re.fullmatch(r"0[1-9][0-9]{8}", digits):
        return "+33" + digits[1:]
    if re.fullmatch(r"\+(33|590|594|262|596|269|687|689|508|681)[0-9]{6,9}", digits):
        return digits
    raise InvalidInput(
        "Ce numéro de téléphone n'est pas valide : 10 chiffres (02 99 12 34 56) ou +33…",
        code="invalid_phone",
        field="telephone",
    )


class Stop(BaseModel):
    """One stop of an itinerant site: where, and when (OpenStreetMap hours)."""

    model_config = ConfigDict(extra="forbid")

    lieu: str = Field(min_length=2, max_length=120)
    adresse: str = Field(min_length=3, max_length=200)
    code_insee: str | None = Field(default=None, max_length=5)
    horaires: str = Field(min_length=3, max_length=300)


class SiteProfileUpdate(BaseModel):
    """PATCH /api/v1/sites/{id}/profile: the fields given replace the profile's."""

    model_config = ConfigDict(extra="forbid")

    adresse: str | None = Field(default=None, max_length=300)
    code_postal: str | None = None
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    horaires: str | None = None
    etapes: list[Stop] | None = Field(default=None, max_length=MAX_STOPS)
    services: list[Service] | None = None
    accessibilite: str | None = Field(default=None, max_length=500)
    telephone: str | None = None
    courriel: str | None = Field(default=None, max_length=254)
    site_web: str | None = Field(default=None, max_length=300)

    @field_validator("code_postal")
    @classmethod
    def _postcode(cls, v: str | None) -> str | None:
        if v is not None and not _POSTCODE.fullmatch(v.strip()):
            raise InvalidInput(
                "Le code postal doit comporter 5 chiffres.",
                code="invalid_postcode",
                field="code_postal",
            )
        return v.strip() if v else v

    @field_validator("courriel")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        if v and not _EMAIL.fullmatch(v.strip()):
            raise InvalidInput(
                "Cette adresse e-mail n'est pas valide.", code="invalid_email", field="courriel"
            )
        return v.strip() if v else None

    @field_validator("site_web")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v and not _URL.fullmatch(v.strip()):
            raise InvalidInput(
                "L'adresse du site web doit commencer par https://",
                code="invalid_url",
                field="site_web",
            )
        return v.strip() if v else None


async def _site(session: AsyncSession, site_id: int, *, for_update: bool = False) -> Organisation:
    org = await session.get(Organisation, site_id, with_for_update=for_update)
    if org is None:
        raise NotFound("Lieu introuvable.", organisation_id=site_id)
    if org.kind != OrganisationKind.site.value:
        raise NotASite(organisation_id=site_id)
    return org


def _may_edit(role: Role, organisation_id: int, site_id: int) -> None:
    if role == Role.operator_admin:
        return
    if role == Role.site_mediator and organisation_id == site_id:
        return
    raise Forbidden("Seuls les médiateurs de ce lieu et l'opérateur peuvent modifier son profil.")


async def update_profile(
    session: AsyncSession,
    *,
    role: Role,
    organisation_id: int,
    site_id: int,
    data: SiteProfileUpdate,
    now: datetime,
) -> Organisation:
    """A mediator of the site (or the operator) edits its public profile; every field is
    checked before anything changes. The operator sees the change to check."""
    _may_edit(role, organisation_id, site_id)
    site = await _site(session, site_id, for_update=True)
    given = data.model_fields_set
    hours = validate_opening_hours(data.horaires) if "horaires" in given else site.opening_hours
    stops = site.stops
    if "etapes" in given:
        stops = []
        for i, stop in enumerate(data.etapes or []):
            stop_hours = validate_opening_hours(stop.horaires, field_name=f"etapes[{i}].horaires")
            code = stop.code_insee.upper() if stop.code_insee else None
            if code and await communes.get_commune(session, code) is None:
                raise InvalidInput(
                    f"Étape {i + 1} : commune inconnue ({code}).",
                    code="unknown_commune",
                    field=f"etapes[{i}].code_insee",
                )
            stops.append(
                {
                    "lieu": stop.lieu.strip(),
                    "adresse": stop.adresse.strip(),
                    "code_insee": code,
                    "horaires": stop_hours,
                }
            )
    phone = normalise_phone(data.telephone) if "telephone" in given else site.phone
    postcode = data.code_postal if "code_postal" in given else site.postcode
    if postcode:
        commune = await communes.get_commune(session, site.commune_insee)
        if commune is not None and commune.postcodes and postcode not in commune.postcodes:
            raise InvalidInput(
                f"Le code postal {postcode} n'est pas celui de {commune.name} "
                f"({', '.join(commune.postcodes)}).",
                code="postcode_not_in_commune",
                field="code_postal",
                postcodes=commune.postcodes,
            )
    if ("latitude" in given) != ("longitude" in given):
        raise InvalidInput(
            "Donnez la latitude et la longitude ensemble (ou aucune : le centre de la commune "
            "est alors utilisé).",
            code="invalid_coordinates",
            field="latitude",
        )
    site.opening_hours = hours
    site.stops = stops
    site.phone = phone
    site.postcode = postcode
    if "adresse" in given:
        site.address = " ".join((data.adresse or "").split()) or None
    if "latitude" in given:
        site.latitude, site.longitude = data.latitude, data.longitude
    if "services" in given:
        site.services = sorted({s.value for s in data.services or []})
    if "accessibilite" in given:
        site.accessibility = " ".join((data.accessibilite or "").split()) or None
    if "courriel" in given:
        site.email = data.courriel
    if "site_web" in given:
        site.website = data.site_web
    site.profile_updated_at = now
    await session.flush()
    return site


async def check_profile(session: AsyncSession, *, site_id: int, now: datetime) -> Organisation:
    """The operator has read the profile as it is now."""
    site = await _site(session, site_id, for_update=True)
    site.profile_checked_at = now
    await session.flush()
    return site


# --------------------------------------------------------------------------- the directory


@dataclass
class PublicSite:
    id: int
    nom: str
    pivot: str
    adresse: str
    code_postal: str
    code_insee: str
    commune: str
    latitude: float | None
    longitude: float | None
    horaires: str | None
    services: list[str]
    frais_a_charge: str
    date_maj: date
    distance_km: float | None
    etapes: list[dict[str, Any]] = field(default_factory=list)
    accessibilite: str | None = None
    telephone: str | None = None
    courriel: str | None = None
    site_web: str | None = None
    ouvert_maintenant: bool | None = None
    prochaine_ouverture: datetime | None = None

    @property
    def itinerant(self) -> bool:
        return bool(self.etapes)

    @property
    def services_labels(self) -> list[str]:
        return [label(s) for s in self.services]

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "nom": self.nom,
            "pivot": self.pivot,
            "adresse": self.adresse,
            "code_postal": self.code_postal,
            "code_insee": self.code_insee,
            "commune": self.commune,
            "latitude": self.latitude,
            "longitude": self.longitude,
            "horaires": self.horaires,
            "services": self.services,
            "frais_a_charge": self.frais_a_charge,
            "pass_numerique": True,
            "date_maj": self.date_maj.isoformat(),
            "distance_km": self.distance_km,
            "itinerant": self.itinerant,
            "etapes": self.etapes,
            "accessibilite": self.accessibilite,
            "telephone": self.telephone,
            "courriel": self.courriel,
            "site_web": self.site_web,
            "ouvert_maintenant": self.ouvert_maintenant,
        }


# Qualified sites only; coordinates are the site's own, else its commune's centre; distance by
# the haversine formula from the searched commune's centre (NULL when either is unknown, such
# sites then come after, same commune and same département first).
_DIRECTORY = text("""
SELECT o.id, o.name, o.siret, coalesce(o.address, ''), o.postcode, o.commune_insee,
       coalesce(c.name, o.commune_insee), coalesce(o.latitude, c.latitude),
       coalesce(o.longitude, c.longitude), o.opening_hours, o.services, o.stops,
       o.accessibility, o.phone, o.email, o.website,
       coalesce(o.profile_updated_at, o.qualification_changed_at, o.created_at),
       c.postcodes,
       CASE WHEN CAST(:lat AS float8) IS NULL OR coalesce(o.latitude, c.latitude) IS NULL
            THEN NULL
            ELSE 2 * 6371 * asin(sqrt(
                power(sin(radians(coalesce(o.latitude, c.latitude) - :lat) / 2), 2)
                + cos(radians(:lat)) * cos(radians(coalesce(o.latitude, c.latitude)))
                  * power(sin(radians(coalesce(o.longitude, c.longitude) - :lon) / 2), 2)))
       END AS distance
FROM organisation o LEFT JOIN commune c ON c.code = o.commune_insee
WHERE o.kind = 'site' AND o.qualification = 'qualified'
  AND (CAST(:site_id AS bigint) IS NULL OR o.id = :site_id)
ORDER BY distance NULLS LAST, o.commune_insee = :code DESC,
         left(o.commune_insee, 2) = left(:code, 2) DESC, coalesce(c.name, ''), o.name, o.id
LIMIT :limit
""")


def _public(row: Any, now: datetime) -> PublicSite:
    (
        id_,
        name,
        siret,
        address,
        postcode,
        insee,
        commune,
        lat,
        lon,
        hours,
        services,
        stops,
        access,
        phone,
        email,
        website,
        updated,
        postcodes,
        distance,
    ) = row
    own_hours = hours or ("; ".join(s["horaires"] for s in stops if s.get("horaires")) or None)
    open_now = is_open(own_hours, now)
    return PublicSite(
        id=id_,
        nom=name,
        pivot=siret,
        adresse=address,
        code_postal=postcode or (postcodes[0] if postcodes else ""),
        code_insee=insee,
        commune=commune,
        latitude=lat,
        longitude=lon,
        horaires=own_hours,
        services=list(services or []),
        frais_a_charge=FRAIS_A_CHARGE,
        date_maj=updated.astimezone(PARIS).date(),
        distance_km=round(distance, 1) if distance is not None else None,
        etapes=[{**s, "ouvert_maintenant": is_open(s.get("horaires"), now)} for s in stops],
        accessibilite=access,
        telephone=phone,
        courriel=email,
        site_web=website,
        ouvert_maintenant=open_now,
        prochaine_ouverture=next_opening(own_hours, now) if open_now is False else None,
    )


async def directory(
    session: AsyncSession,
    *,
    near: communes.CommuneRef | None,
    now: datetime,
    limit: int = 20,
) -> list[PublicSite]:
    """Qualified sites, nearest first from the commune's centre (all of them, by commune,
    when no commune is given)."""
    rows = await session.execute(
        _DIRECTORY,
        {
            "lat": near.latitude if near else None,
            "lon": near.longitude if near else None,
            "code": near.code if near else "",
            "site_id": None,
            "limit": limit,
        },
    )
    return [_public(r, now) for r in rows.all()]


async def public_site(session: AsyncSession, *, site_id: int, now: datetime) -> PublicSite:
    """A qualified site's public page; any other site is not found (never « suspended »)."""
    rows = await session.execute(
        _DIRECTORY, {"lat": None, "lon": None, "code": "", "site_id": site_id, "limit": 1}
    )
    row = rows.first()
    if row is None:
        raise NotFound("Ce lieu n'existe pas ou n'accepte pas le Pass numérique.")
    return _public(row, now)


@dataclass
class Search:
    query: str
    communes: list[CommuneRef]
    sites: list[PublicSite]

    @property
    def commune(self) -> CommuneRef | None:
        return self.communes[0] if self.communes else None


async def search_directory(
    session: AsyncSession, *, query: str, now: datetime, limit: int = 20
) -> Search:
    """What /lieux answers: the communes matching `query` (postcode or name) and the sites
    nearest to the first one's centre."""
    found = await communes.search(session, query, limit=8)
    if not found:
        return Search(query, [], [])
    return Search(query, found, await directory(session, near=found[0], now=now, limit=limit))


# --------------------------------------------------------------------------- the data standard

# Columns of the CSV, in the order of the standard's table schema (v1.0.2).
STANDARD_COLUMNS = [
    "id",
    "pivot",
    "nom",
    "commune",
    "code_postal",
    "code_insee",
    "adresse",
    "complement_adresse",
    "latitude",
    "longitude",
    "typologie",
    "telephone",
    "courriels",
    "site_web",
    "horaires",
    "presentation_resume",
    "presentation_detail",
    "source",
    "itinerance",
    "structure_parente",
    "date_maj",
    "services",
    "publics_specifiquement_adresses",
    "prise_en_charge_specifique",
    "frais_a_charge",
    "dispositif_programmes_nationaux",
    "formations_labels",
    "autres_formations_labels",
    "modalites_acces",
    "modalites_accompagnement",
    "fiche_acces_libre",
    "prise_rdv",
]


def standard_row(site: PublicSite) -> dict[str, str]:
    services = sorted({STANDARD_SERVICES[s] for s in site.services if s in STANDARD_SERVICES})
    stops = "; ".join(f"{s['lieu']} ({s['adresse']}) : {s['horaires']}" for s in site.etapes)
    detail = " ".join(
        part
        for part in (
            f"Accessibilité : {site.accessibilite}." if site.accessibilite else "",
            f"Étapes : {stops}." if stops else "",
        )
        if part
    )
    row = {c: "" for c in STANDARD_COLUMNS}
    row.update(
        {
            "id": f"pass-numerique-lieu-{site.id}",
            "pivot": site.pivot,
            "nom": site.nom,
            "commune": site.commune,
            "code_postal": site.code_postal,
            "code_insee": site.code_insee,
            "adresse": site.adresse or site.commune,
            "latitude": f"{site.latitude:.5f}" if site.latitude is not None else "",
            "longitude": f"{site.longitude:.5f}" if site.longitude is not None else "",
            "telephone": site.telephone or "",
            "courriels": site.courriel or "",
            "site_web": site.site_web or "",
            "horaires": site.horaires or "",
            "presentation_resume": PASS_NUMERIQUE,
            "presentation_detail": detail,
            "source": "Pass numérique",
            "itinerance": "Itinérant" if site.itinerant else "Fixe",
            "date_maj": site.date_maj.isoformat(),
            "services": "|".join(services),
            "frais_a_charge": FRAIS_A_CHARGE,
            "modalites_accompagnement": "Accompagnement individuel",
        }
    )
    return row


async def standard_rows(session: AsyncSession, *, now: datetime) -> list[dict[str, str]]:
    """Every qualified site in the data standard's columns (no beneficiary data here)."""
    return [standard_row(s) for s in await directory(session, near=None, now=now, limit=100_000)]


__all__ = [
    "PublicSite",
    "Qualification",
    "SiteProfileUpdate",
    "check_profile",
    "directory",
    "is_open",
    "public_site",
    "search_directory",
    "standard_rows",
    "update_profile",
    "validate_opening_hours",
]
