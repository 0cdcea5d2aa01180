"""The scheme's vocabularies (DESIGN.md §2), with the French labels users read."""

from __future__ import annotations

from enum import IntEnum, StrEnum


class OrganisationKind(StrEnum):
    operator = "operator"
    financer = "financer"
    issuer = "issuer"
    site = "site"


class Qualification(StrEnum):
    pending = "pending"
    qualified = "qualified"
    suspended = "suspended"
    withdrawn = "withdrawn"


class Role(StrEnum):
    operator_admin = "operator_admin"
    financer = "financer"
    issuer_agent = "issuer_agent"
    site_mediator = "site_mediator"


# The organisation kind each role belongs to.
ROLE_KIND: dict[Role, OrganisationKind] = {
    Role.operator_admin: OrganisationKind.operator,
    Role.financer: OrganisationKind.financer,
    Role.issuer_agent: OrganisationKind.issuer,
    Role.site_mediator: OrganisationKind.site,
}


class FinancerCategory(StrEnum):
    state = "state"
    region = "region"
    departement = "departement"
    epci = "epci"
    commune = "commune"
    organisme = "organisme"  # CAF, CPAM, CNAV/CARSAT, MSA, France Travail, DGFiP, ANTS…
    autre = "autre"


class FinancerRole(StrEnum):
    state = "state"
    local = "local"
    operator = "operator"


class DemarcheFamily(StrEnum):
    caf = "caf"
    assurance_maladie = "assurance_maladie"
    assurance_retraite = "assurance_retraite"
    msa = "msa"
    france_travail = "france_travail"
    impots = "impots"
    ants = "ants"
    justice = "justice"
    la_poste = "la_poste"
    logement = "logement"
    energie = "energie"
    autre = "autre"


class Service(StrEnum):
    creer_courriel = "creer_courriel"
    naviguer_web = "naviguer_web"
    acceder_services_en_ligne = "acceder_services_en_ligne"
    connaitre_ses_droits = "connaitre_ses_droits"
    realiser_demarche = "realiser_demarche"
    ecrire_document = "ecrire_document"


class NeedLevel(IntEnum):
    urgence = 1
    inclusion = 2
    competences = 3


class BookletStatus(StrEnum):
    in_stock = "in_stock"
    active = "active"
    cancelled = "cancelled"


class ChequeStatus(StrEnum):
    in_stock = "in_stock"
    active = "active"
    redeemed = "redeemed"
    expired = "expired"
    cancelled = "cancelled"


LABELS: dict[str, str] = {
    # organisation kinds
    "operator": "Opérateur",
    "financer": "Financeur",
    "issuer": "Structure prescriptrice",
    "site": "Lieu de médiation numérique",
    # qualification
    "pending": "En attente de qualification",
    "qualified": "Qualifié",
    "suspended": "Suspendu",
    "withdrawn": "Retiré",
    # roles
    "operator_admin": "Administrateur opérateur",
    "issuer_agent": "Agent prescripteur",
    "site_mediator": "Médiateur numérique",
    # financer roles
    "state": "État",
    "local": "Collectivité ou organisme",
    # démarche families
    "caf": "CAF (allocations familiales)",
    "assurance_maladie": "Assurance maladie (CPAM)",
    "assurance_retraite": "Assurance retraite (CNAV, CARSAT)",
    "msa": "MSA",
    "france_travail": "France Travail",
    "impots": "Impôts (DGFiP)",
    "ants": "Titres (ANTS : carte grise, permis, identité)",
    "justice": "Justice",
    "la_poste": "La Poste",
    "logement": "Logement (ANAH)",
    "energie": "Énergie",
    "autre": "Autre",
    # services
    "creer_courriel": "Créer et utiliser une adresse e-mail",
    "naviguer_web": "Naviguer sur internet",
    "acceder_services_en_ligne": "Accéder aux services en ligne",
    "connaitre_ses_droits": "Connaître ses droits",
    "realiser_demarche": "Réaliser une démarche en ligne",
    "ecrire_document": "Écrire un document",
    # statuses
    "in_stock": "En stock",
    "active": "Actif",
    "redeemed": "Encaissé",
    "expired": "Expiré",
    "cancelled": "Annulé",
}


# The one label of "no démarche" (a redemption's family left empty), everywhere a person reads it.
NO_DEMARCHE = "Sans démarche précisée"


def demarche_label(value: object) -> str:
    """A démarche family as people read it, `NO_DEMARCHE` when none was given."""
    return label(value) if value else NO_DEMARCHE


def label(value: object) -> str:
    key = value.value if hasattr(value, "value") else value
    return LABELS.get(str(key), str(key))
