"""The demo territory (AdmiVille) and the first administrator; idempotent.

`passnum demo` runs this: an operator, État/ANCT, the Département, the CAF, the CCAS of
AdmiVille, three mediation sites (one still pending qualification), their users, and a
programme. Running it again changes nothing and prints the same logins.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kit.clock import utcnow
from kit.settings import Settings
from pass_ import accounts
from pass_.enums import FinancerCategory, OrganisationKind, Qualification, Role, Service
from pass_.errors import EmailTaken
from pass_.models import AppUser, Organisation
from pass_.schemas import OrganisationCreate, UserCreate

DEMO_PASSWORD = "demo-passnum-2026"
DEMO_COMMUNE = "35238"  # AdmiVille is a fictional town; its code sits in Ille-et-Vilaine (35)


def luhn_complete(prefix13: str) -> str:
    """The 14-digit SIRET whose last digit makes the Luhn sum right."""
    for last in "0123456789":
        candidate = prefix13 + last
        from pass_.validation import luhn_ok

        if luhn_ok(candidate):
            return candidate
    raise AssertionError("unreachable")


# (key, kind, name, siret prefix, commune, extra)
DEMO_ORGANISATIONS: list[tuple[str, OrganisationKind, str, str, str, dict[str, object]]] = [
    (
        "operator",
        OrganisationKind.operator,
        "Opérateur Pass numérique",
        "9100000000001",
        "75056",
        {},
    ),
    (
        "etat",
        OrganisationKind.financer,
        "État — ANCT",
        "1300000000001",
        "75056",
        {"financer_category": FinancerCategory.state},
    ),
    (
        "departement",
        OrganisationKind.financer,
        "Département d'Ille-et-Vilaine",
        "2235000000001",
        "35238",
        {
            "financer_category": FinancerCategory.departement,
            "iban": "FR7630006000011234567890189",
            "bic": "AGRIFRPP",
        },
    ),
    (
        "caf",
        OrganisationKind.financer,
        "CAF d'Ille-et-Vilaine",
        "5350000000001",
        "35238",
        {"financer_category": FinancerCategory.organisme},
    ),
    ("ccas", OrganisationKind.issuer, "CCAS d'AdmiVille", "2635000000001", "35238", {}),
    (
        "mediatheque",
        OrganisationKind.site,
        "Médiathèque des Champs Libres",
        "2135000000011",
        "35238",
        {
            "iban": "FR1420041010050500013M02606",
            "bic": "PSSTFRPPREN",
            "address": "10 cours des Alliés, AdmiVille",
            "services": [
                Service.creer_courriel,
                Service.realiser_demarche,
                Service.acceder_services_en_ligne,
            ],
        },
    ),
    (
        "asso",
        OrganisationKind.site,
        "Association Le Clic Solidaire",
        "8000000000021",
        "35238",
        {
            "iban": "FR7630001007941234567890185",
            "bic": "BDFEFRPP",
            "address": "4 rue de la Solidarité, AdmiVille",
            "services": [Service.naviguer_web, Service.ecrire_document],
        },
    ),
    (
        "bus",
        OrganisationKind.site,
        "Bus numérique itinérant",
        "8000000000031",
        "35001",
        {"address": "Place de la Mairie, Acigné", "services": [Service.naviguer_web]},
    ),
    (
        "cyberbus",
        OrganisationKind.site,
        "Cyber-bus de la Métropole",
        "8000000000041",
        "35051",
        {
            "iban": "FR7630006000011234567890189",
            "bic": "AGRIFRPP",
            "address": "Esplanade de la Mairie, Cesson-Sévigné",
            "services": [Service.naviguer_web, Service.acceder_services_en_ligne],
        },
    ),
]

# The public profiles of the demo's sites (issue 15): hours in OpenStreetMap's syntax, services,
# contacts; the cyber-bus is itinerant (a stop a day). Set once: a site's own edits are kept.
DEMO_PROFILES: dict[str, dict[str, object]] = {
    "mediatheque": {
        "adresse": "10 cours des Alliés",
        "code_postal": "35000",
        "horaires": "Tu-Fr 10:00-19:00; Sa 10:00-18:00; PH off",
        "services": ["creer_courriel", "realiser_demarche", "acceder_services_en_ligne"],
        "accessibilite": "Accès de plain-pied, ascenseur, boucle magnétique à l'accueil",
        "telephone": "02 23 40 66 00",
        "site_web": "https://mediatheque.admiville.example",
    },
    "asso": {
        "adresse": "4 rue de la Solidarité",
        "code_postal": "35200",
        "horaires": "Mo-Fr 09:00-12:00,14:00-17:30",
        "services": ["naviguer_web", "ecrire_document", "connaitre_ses_droits"],
        "accessibilite": "Rez-de-chaussée, une marche à l'entrée (rampe sur demande)",
        "telephone": "02 99 00 11 22",
        "courriel": "contact@clic-solidaire.example",
    },
    "cyberbus": {
        "adresse": "Esplanade de la Mairie",
        "code_postal": "35510",
        "services": ["naviguer_web", "acceder_services_en_ligne"],
        "telephone": "06 12 34 56 78",
        "etapes": [
            {"lieu": "Acigné, place de la Mairie", "adresse": "Place de la Mairie, Acigné",
             "code_insee": "35001", "horaires": "Tu 09:00-12:30"},
            {"lieu": "Cesson-Sévigné, esplanade", "adresse": "Esplanade de la Mairie, "
             "Cesson-Sévigné", "code_insee": "35051", "horaires": "Th 14:00-17:30"},
            {"lieu": "Rennes, marché des Lices", "adresse": "Place des Lices, Rennes",
             "code_insee": "35238", "horaires": "Sa 08:00-13:00"},
        ],
    },
}

# (role label, email, organisation key, role)
DEMO_USERS: list[tuple[str, str, str, Role]] = [
    ("Administrateur opérateur", "admin@demo.passnum.fr", "operator", Role.operator_admin),
    ("Agent du CCAS", "agent@ccas-admiville.fr", "ccas", Role.issuer_agent),
    (
        "Médiatrice (médiathèque)",
        "mediatrice@mediatheque-admiville.fr",
        "mediatheque",
        Role.site_mediator,
    ),
    ("Médiateur (association)", "mediateur@clic-solidaire.fr", "asso", Role.site_mediator),
    ("Médiateur (bus, non qualifié)", "mediateur@bus-numerique.fr", "bus", Role.site_mediator),
    ("Financeur État (ANCT)", "financeur@anct.gouv.fr", "etat", Role.financer),
    ("Financeur Département", "financeur@ille-et-vilaine.fr", "departement", Role.financer),
    ("Financeur CAF", "financeur@caf35.fr", "caf", Role.financer),
]


async def _ensure_org(
    session: AsyncSession,
    kind: OrganisationKind,
    name: str,
    siret: str,
    commune: str,
    extra: dict[str, object],
) -> Organisation:
    org = await session.scalar(
        select(Organisation).where(Organisation.kind == kind.value, Organisation.siret == siret)
    )
    if org is None:
        org = await accounts.create_organisation(
            session,
            OrganisationCreate(kind=kind, name=name, siret=siret, commune_insee=commune, **extra),
        )  # type: ignore[arg-type]
    return org


async def _ensure_user(
    session: AsyncSession, email: str, password: str, org: Organisation, role: Role
) -> AppUser:
    user = await accounts.find_user_by_email(session, email)
    if user is None:
        user = await accounts.create_user(
            session, UserCreate(email=email, password=password, organisation_id=org.id, role=role)
        )  # type: ignore[arg-type]
    return user


async def ensure_admin(
    session: AsyncSession, *, email: str, password: str, organisation_name: str
) -> AppUser:
    """The operator administrator with this e-mail: created if missing, else left unchanged
    (an account of another role with this e-mail is refused, not reported as ready)."""
    existing = await accounts.find_user_by_email(session, email.strip())
    if existing is not None:
        if existing.role != Role.operator_admin.value:
            raise EmailTaken(
                "Cette adresse e-mail appartient déjà à un compte qui n'est pas "
                "administrateur de l'opérateur.",
                role=existing.role,
            )
        return existing
    operator = await session.scalar(
        select(Organisation)
        .where(Organisation.kind == OrganisationKind.operator.value)
        .order_by(Organisation.id)
    )
    if operator is None:
        operator = await _ensure_org(
            session,
            OrganisationKind.operator,
            organisation_name,
            luhn_complete("9100000000001"),
            "75056",
            {},
        )
    return await _ensure_user(session, email, password, operator, Role.operator_admin)


async def seed_demo(
    session: AsyncSession, settings: Settings | None = None
) -> list[tuple[str, str, str]]:
    from pass_ import communes

    if await communes.count(session) == 0:  # a fresh machine: the reference ships in npm
        await communes.load_communes(session, communes.read_reference())
    orgs: dict[str, Organisation] = {}
    for key, kind, name, prefix, commune, extra in DEMO_ORGANISATIONS:
        orgs[key] = await _ensure_org(session, kind, name, luhn_complete(prefix), commune, extra)
    now = utcnow()
    for key in ("mediatheque", "asso", "cyberbus"):
        if orgs[key].qualification == Qualification.pending.value:
            await accounts.set_qualification(
                session,
                site_id=orgs[key].id,  # type: ignore[arg-type]
                to=Qualification.qualified,
                now=now,
            )
    logins = []
    for label, email, org_key, role in DEMO_USERS:
        await _ensure_user(session, email, DEMO_PASSWORD, orgs[org_key], role)
        logins.append((label, email, DEMO_PASSWORD))
    await seed_demo_programme(session, orgs)
    await seed_demo_profiles(session, orgs)
    return logins


async def seed_demo_profiles(session: AsyncSession, orgs: dict[str, Organisation]) -> None:
    from pass_ import sites

    for key, profile in DEMO_PROFILES.items():
        org = orgs[key]
        if org.profile_updated_at is not None:
            continue
        await sites.update_profile(
            session,
            role=Role.operator_admin,
            organisation_id=org.id,  # type: ignore[arg-type]
            site_id=org.id,  # type: ignore[arg-type]
            data=sites.SiteProfileUpdate.model_validate(profile),
            now=utcnow(),
        )


async def seed_demo_programme(session: AsyncSession, orgs: dict[str, Organisation]) -> None:
    """The demo programme (filled in by the issuance feature once programmes exist)."""
    try:
        from pass_ import programmes
    except ModuleNotFoundError:
        return
    await programmes.ensure_demo_programme(session, orgs)
