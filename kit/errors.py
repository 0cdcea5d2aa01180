"""The base of every domain error: a stable code, a French message, details.

Domain packages raise subclasses; api/errors.py maps codes to HTTP statuses in one table.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    code: str = "invalid_request"
    message: str = "La demande est invalide."

    def __init__(
        self, message: str | None = None, *, code: str | None = None, **details: Any
    ) -> None:
        self.message = message or type(self).message
        if code:
            self.code = code
        self.details = details
        super().__init__(self.message)


class NotFound(DomainError):
    code = "not_found"
    message = "Objet introuvable."


class Forbidden(DomainError):
    code = "forbidden"
    message = "Vous n'avez pas le droit de faire cette action."


class InvalidInput(DomainError, ValueError):
    # Also a ValueError so that validators raising it inside a pydantic model become a
    # ValidationError (every bad field reported at once, the domain error kept in `ctx`)
    # instead of escaping half-way through parsing the request.
    code = "validation_error"
    message = "Les données envoyées sont invalides."


class Conflict(DomainError):
    code = "conflict"
    message = "Cette action est en conflit avec l'état actuel."
