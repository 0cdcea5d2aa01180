"""The ledger's domain errors, each with a stable code and a French message."""

from __future__ import annotations

from kit.errors import Conflict, DomainError, InvalidInput, NotFound


class LedgerError(DomainError):
    """Base of every error raised by the ledger package."""

    code = "ledger_error"
    message = "Erreur du journal comptable."


class InvalidEntry(LedgerError, InvalidInput):
    code = "invalid_entry"
    message = "L'écriture comptable est invalide."


class UnbalancedEntry(InvalidEntry):
    code = "unbalanced_entry"
    message = "L'écriture comptable n'est pas équilibrée : ses montants ne s'annulent pas."


class IdempotencyConflict(LedgerError, Conflict):
    code = "idempotency_conflict"
    message = ("Cette clé d'idempotence a déjà servi pour une écriture différente : "
               "la demande n'a pas été enregistrée.")


class EntryNotFound(LedgerError, NotFound):
    code = "not_found"
    message = "Écriture comptable introuvable."
