"""Errors of the scheme (no HTTP here: api/errors.py maps codes to statuses)."""

from __future__ import annotations

from kit.errors import Conflict, DomainError, Forbidden, InvalidInput, NotFound

__all__ = ["Conflict", "DomainError", "Forbidden", "InvalidInput", "NotFound"]


class InvalidCredentials(DomainError):
    code = "invalid_credentials"
    message = "Adresse e-mail ou mot de passe incorrect."


class EmailTaken(Conflict):
    code = "email_taken"
    message = "Un compte existe déjà avec cette adresse e-mail."


class OrganisationExists(Conflict):
    code = "organisation_exists"
    message = "Une organisation de ce type existe déjà avec ce SIRET."


class NotASite(InvalidInput):
    code = "not_a_site"
    message = "Cette organisation n'est pas un lieu de médiation numérique."


class WrongOrganisationKind(InvalidInput):
    code = "wrong_organisation_kind"
    message = "Ce rôle ne correspond pas au type de l'organisation."
