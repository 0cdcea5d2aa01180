"""Clearing's domain errors, each with a stable code and a French message."""

from __future__ import annotations

from kit.errors import Conflict, DomainError, InvalidInput, NotFound


class CutoffInFuture(InvalidInput):
    code = "cutoff_in_future"
    message = "La date d'arrêté ne peut pas être dans le futur."


class CutoffBeforeLast(InvalidInput):
    code = "cutoff_before_last_batch"
    message = ("La date d'arrêté est antérieure à celle du dernier lot : choisissez une date "
               "postérieure (les encaissements enregistrés en retard iront dans le prochain "
               "lot).")


class BatchEmpty(Conflict):
    code = "batch_empty"
    message = ("Aucun encaissement à compenser avant cette date d'arrêté : aucun lot n'a été "
               "créé.")


class ExpiryDayInFuture(InvalidInput):
    code = "expiry_day_in_future"
    message = "Le jour d'expiration ne peut pas être postérieur à aujourd'hui (heure de Paris)."


class ExpiryDayTooOld(InvalidInput):
    code = "expiry_day_too_old"
    message = "Le jour d'expiration est trop ancien pour un rattrapage."


class ExpiryNeedsConfirmation(Conflict):
    code = "expiry_confirmation_required"
    message = ("Cette expiration toucherait une part importante des chèques actifs : "
               "vérifiez le jour puis confirmez explicitement.")


class ConcurrentChange(Conflict):
    code = "conflict"
    message = ("Des encaissements ont été annulés pendant l'arrêté du lot, à plusieurs "
               "reprises : réessayez.")


class BatchNotFound(NotFound):
    code = "not_found"
    message = "Lot de compensation introuvable."


class StatementNotFound(NotFound):
    code = "not_found"
    message = "Relevé introuvable."


class StatementNotPayable(Conflict):
    code = "statement_not_payable"
    message = "Ce relevé ne donne lieu à aucun paiement."


class PaymentAlreadyRecorded(Conflict):
    code = "payment_already_recorded"
    message = "Le paiement de ce relevé est déjà enregistré."


class PaymentInProgress(Conflict):
    code = "payment_in_progress"
    message = ("Un prélèvement est en cours pour ce relevé : attendez son résultat avant "
               "d'enregistrer un virement.")


class TransferAmountMismatch(InvalidInput):
    code = "transfer_amount_mismatch"
    message = "Le montant du virement ne correspond pas au montant net du relevé."


class ProgrammeNotEnded(Conflict):
    code = "programme_not_ended"
    message = ("Le programme n'est pas terminé : sa date limite d'encaissement n'est pas "
               "passée depuis 7 jours (délai des chèques scannés hors ligne).")


class ProgrammeNotCleared(Conflict):
    code = "programme_not_cleared"
    message = ("Des encaissements de ce programme ne sont pas encore compensés, ou des chèques "
               "sont encore actifs : arrêtez un lot et lancez l'expiration d'abord.")


class PaymentsNotConfigured(DomainError):
    code = "payments_not_configured"
    message = "Les prélèvements ne sont pas configurés (clé Stripe absente)."


class NothingToTransfer(Conflict):
    code = "nothing_to_transfer"
    message = "Aucun virement à émettre pour ce lot (tout est payé ou suspendu)."
