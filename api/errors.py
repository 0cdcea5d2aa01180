"""The HTTP contract of errors (DESIGN.md §7) in one place: code → status, and the handlers.

Every error answer is `{"error": {"code", "message", "details"}}` with a French message; no
expected failure is ever a 500.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from kit.errors import DomainError

log = structlog.get_logger()

# Code → HTTP status. Codes not listed: 422 for input problems (the default), as the contract says.
STATUS: dict[str, int] = {
    # authentication and authorisation
    "unauthenticated": 401,
    "invalid_credentials": 401,
    "token_expired": 401,
    "invalid_access_token": 401,
    "forbidden": 403,
    "csrf_failed": 403,
    "site_not_qualified": 403,
    "site_not_eligible": 403,
    # lookups
    "not_found": 404,
    "cheque_not_found": 404,
    "booklet_not_found": 404,
    "booklet_check_failed": 404,  # « mon pass »: wrong number or code, one answer for both
    # conflicts
    "cheque_already_redeemed": 409,
    "idempotency_conflict": 409,
    "programme_capacity_exceeded": 409,
    "quota_exceeded": 409,
    "conflict": 409,
    "email_taken": 409,
    "organisation_exists": 409,
    "booklet_not_in_stock": 409,
    "hand_out_closed": 409,  # the programme's last days: stock booklets no longer handed out
    "booklet_not_active": 409,
    "booklet_already_cancelled": 409,
    "beneficiary_exists": 409,
    "redemption_already_reversed": 409,
    "redemption_in_batch": 409,
    "reversal_window_closed": 409,
    "payment_already_recorded": 409,
    "invalid_transition": 409,
    "programme_not_ended": 409,
    "cutoff_in_future": 422,
    "cutoff_before_last_batch": 422,
    "batch_empty": 409,
    "date_out_of_range": 422,
    "expiry_day_in_future": 422,
    "expiry_day_too_old": 422,
    "expiry_confirmation_required": 409,
    # anomaly watch (clearing/anomalies.py)
    "anomaly_not_found": 404,
    "anomaly_closed": 409,
    "note_required": 422,
    "anomaly_without_site": 409,
    # clearing and payments
    "statement_not_payable": 409,
    "payment_in_progress": 409,
    "programme_not_cleared": 409,
    "nothing_to_transfer": 409,
    "invalid_payload": 400,
    "payment_refused": 402,
    "payment_provider_error": 502,
    "payments_not_configured": 503,
    "invoice_already_paid": 409,
    "invoice_not_payable": 409,
    "payment_amount_mismatch": 409,
    "invoice_not_depositable": 409,
    "chorus_not_configured": 503,
    "chorus_error": 502,
    # cheque states
    "cheque_expired": 410,
    "cheque_cancelled": 410,
    "cheque_not_active": 410,
    "cheque_not_yet_valid": 422,
    "invalid_token": 422,
    "invalid_serial": 422,
    "serial_check_failed": 422,
    # input
    "validation_error": 422,
    "bad_request": 400,
    "invalid_signature": 400,
    "payload_too_large": 413,
    "rate_limited": 429,
    "method_not_allowed": 405,
    "service_unavailable": 503,
}


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def status_for(code: str) -> int:
    return STATUS.get(code, 422)


def error_response(
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    status = status_for(code)
    if status == 401:  # RFC 6750: say how to authenticate
        headers = {"WWW-Authenticate": "Bearer", **(headers or {})}
    return JSONResponse(error_body(code, message, details), status_code=status, headers=headers)


_FR_TYPES = {
    "missing": "Ce champ est obligatoire.",
    "string_too_short": "Ce texte est trop court.",
    "string_too_long": "Ce texte est trop long.",
    "int_parsing": "Un nombre entier est attendu.",
    "int_type": "Un nombre entier est attendu.",
    "int_from_float": "Un nombre entier est attendu.",
    "date_from_datetime_parsing": "Une date au format AAAA-MM-JJ est attendue.",
    "date_parsing": "Une date au format AAAA-MM-JJ est attendue.",
    "date_type": "Une date au format AAAA-MM-JJ est attendue.",
    "datetime_parsing": "Une date et heure ISO 8601 est attendue.",
    "datetime_from_date_parsing": "Une date et heure ISO 8601 est attendue.",
    "enum": "Cette valeur ne fait pas partie des choix possibles.",
    "literal_error": "Cette valeur ne fait pas partie des choix possibles.",
    "extra_forbidden": "Ce champ n'est pas attendu.",
    "greater_than": "La valeur est trop petite.",
    "greater_than_equal": "La valeur est trop petite.",
    "less_than": "La valeur est trop grande.",
    "less_than_equal": "La valeur est trop grande.",
    "value_error": "Valeur invalide.",
    "list_type": "Une liste est attendue.",
    "too_short": "La liste ne contient pas assez d'éléments.",
    "too_long": "La liste contient trop d'éléments.",
    "json_invalid": "Le corps de la requête n'est pas du JSON valide.",
    "model_attributes_type": "Un objet JSON est attendu.",
    "dict_type": "Un objet JSON est attendu.",
    "string_type": "Un texte est attendu.",
    "bool_parsing": "Une valeur vrai/faux est attendue.",
    "string_pattern_mismatch": "Le format de cette valeur est invalide.",
}


def _french_validation(exc: RequestValidationError) -> tuple[str, str, dict[str, Any]]:
    fields = []
    code = "validation_error"
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
        ctx = err.get("ctx") or {}
        inner = ctx.get("error")
        field_code = "validation_error"
        if isinstance(inner, DomainError):  # our validators (SIRET, IBAN, INSEE…)
            message = inner.message
            field_code = inner.code
            code = inner.code if len(exc.errors()) == 1 else code
        else:
            message = _FR_TYPES.get(err.get("type", ""), "Valeur invalide.")
            if err.get("type") == "value_error" and "email" in str(err.get("msg", "")).lower():
                message = "Adresse e-mail invalide."
        if err.get("type") == "json_invalid":
            loc = []  # pydantic puts the character position there, not a field name
        fields.append({"field": ".".join(loc) or "body", "message": message, "code": field_code})
    if len({f["code"] for f in fields}) == 1:  # every field refused by the same rule
        code = fields[0]["code"]
    summary = "; ".join(f"{f['field']} : {f['message']}" for f in fields[:5])
    return code, f"Données invalides — {summary}", {"fields": fields}


def install(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> JSONResponse:
        return error_response(exc.code, exc.message, _jsonable(exc.details))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        code, message, details = _french_validation(exc)
        return error_response(code, message, details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        mapping = {
            404: ("not_found", "Cette adresse n'existe pas."),
            405: ("method_not_allowed", "Méthode non autorisée pour cette adresse."),
            401: ("unauthenticated", "Authentification requise."),
            403: ("forbidden", "Accès refusé."),
            413: ("payload_too_large", "La requête est trop volumineuse."),
        }
        if exc.status_code == 400 and exc.__cause__ is not None:
            # FastAPI could not read the body at all (bytes that are not UTF-8, a number of
            # thousands of digits, nesting too deep, a broken multipart): bad input like any
            # other malformed JSON.
            readable = "n'est pas du JSON valide" if _is_json(request) else "est illisible"
            field_message = f"Le corps de la requête {readable}."
            return error_response(
                "validation_error",
                f"Données invalides — body : {field_message}",
                {"fields": [{"field": "body", "message": field_message,
                             "code": "validation_error"}]},
            )
        code, message = mapping.get(exc.status_code, ("bad_request", "Requête invalide."))
        if isinstance(exc.detail, dict) and "code" in exc.detail:
            code, message = exc.detail["code"], exc.detail.get("message", message)
        return JSONResponse(
            error_body(code, message),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        request_id = getattr(request.state, "request_id", None)
        log.exception("unexpected_error", path=request.url.path, request_id=request_id)
        return JSONResponse(
            error_body(
                "internal_error",
                "Une erreur inattendue est survenue. Réessayez ; si elle "
                "persiste, contactez l'opérateur.",
                {"request_id": request_id} if request_id else None,
            ),
            status_code=500,
            headers={"x-request-id": request_id} if request_id else None,
        )

    @app.exception_handler(DBAPIError)
    async def _database(request: Request, exc: DBAPIError) -> JSONResponse:
        # What the database refuses because of the request's values (a NUL character, an id
        # beyond bigint, a constraint a service did not check first) is bad input, not a crash.
        sqlstate = str(getattr(exc.orig, "sqlstate", None) or "")
        if sqlstate.startswith("22"):
            log.info("database_refused_value", sqlstate=sqlstate, path=request.url.path)
            return error_response(
                "validation_error",
                "Une valeur envoyée est invalide ou hors des limites acceptées.",
                {"sqlstate": sqlstate},
            )
        if sqlstate.startswith("23"):
            log.warning("database_constraint", sqlstate=sqlstate, path=request.url.path)
            return error_response(
                "conflict",
                "Cette action est en conflit avec l'état actuel des données.",
                {"sqlstate": sqlstate},
            )
        if sqlstate in ("40001", "40P01"):  # serialization failure, deadlock: transient
            log.warning("database_retry", sqlstate=sqlstate, path=request.url.path)
            return error_response(
                "service_unavailable",
                "Le service est momentanément occupé : réessayez dans un instant.",
                {"sqlstate": sqlstate},
                headers={"Retry-After": "1"},
            )
        return await _unexpected(request, exc)


def _is_json(request: Request) -> bool:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return content_type == "application/json" or content_type.endswith("+json")


def _jsonable(value: Any) -> Any:
    """Details as JSON, at any depth (a date inside a list must not turn a 409 into a 500)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool, type(None))):
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)
