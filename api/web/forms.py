"""Form helpers: turn validation and domain errors into French messages tied to fields."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from starlette.datastructures import FormData

from api.errors import _FR_TYPES
from kit.errors import DomainError


def field_errors(exc: ValidationError) -> dict[str, str]:
    """`{field: French message}` from a pydantic error (our validators carry French messages)."""
    out: dict[str, str] = {}
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        field = loc[0] if loc else "_form"
        inner = (err.get("ctx") or {}).get("error")
        if isinstance(inner, DomainError):
            message = inner.message
        elif err.get("input") in (None, "") and err.get("type") != "value_error":
            message = "Ce champ est obligatoire."
        else:
            message = _FR_TYPES.get(err.get("type", ""), "Valeur invalide.")
            if "email" in str(err.get("msg", "")).lower():
                message = "Adresse e-mail invalide (exemple : nom@exemple.fr)."
        out.setdefault(field, message)
    return out


def domain_error_fields(exc: DomainError) -> dict[str, str]:
    """A domain error names its field in `details["field"]` when it is about one field."""
    field = exc.details.get("field") if isinstance(exc.details, dict) else None
    return {str(field): exc.message} if field else {"_form": exc.message}


def blank_to_none(form: FormData, *names: str) -> dict[str, Any]:
    """The named text fields, stripped, with empty strings as None."""
    out: dict[str, Any] = {}
    for name in names:
        value = form.get(name)
        if isinstance(value, str):
            value = value.strip()
        out[name] = value or None
    return out


def dotted_field_errors(exc: ValidationError) -> dict[str, str]:
    """Like `field_errors`, keyed by the full path (`financers.0.commitment_cents`)."""
    out: dict[str, str] = {}
    for err in exc.errors():
        single = ValidationError.from_exception_data(exc.title, [err])  # type: ignore[list-item]
        message = next(iter(field_errors(single).values()), "Valeur invalide.")
        key = ".".join(str(p) for p in err.get("loc", ())) or "_form"
        out.setdefault(key, message)
    return out


class ParseError(ValueError):
    """A form value that cannot be read as a number; its message is French."""


def parse_euros(text: str | None) -> int | None:
    """« 1 234,50 » or « 1234.5 » euros → cents; None when blank."""
    raw = (text or "").replace("\u202f", "").replace("\u00a0", "").replace(" ", "")
    raw = raw.replace("€", "").replace(",", ".")
    if not raw:
        return None
    whole, _, frac = raw.partition(".")
    if not whole.isdigit() and whole != "" or (frac and not frac.isdigit()) or len(frac) > 2:
        raise ParseError("Montant invalide : écrivez par exemple 1500 ou 1 500,50.")
    return int(whole or 0) * 100 + int((frac + "00")[:2])


def parse_percent_bp(text: str | None) -> int | None:
    """« 50 » or « 12,5 » percent → basis points; None when blank."""
    raw = (text or "").replace("%", "").replace(" ", "").replace(",", ".")
    if not raw:
        return None
    whole, _, frac = raw.partition(".")
    if not whole.isdigit() or (frac and not frac.isdigit()) or len(frac) > 2:
        raise ParseError("Pourcentage invalide : écrivez par exemple 50 ou 12,5.")
    return int(whole) * 100 + int((frac + "00")[:2])


def parse_int(text: str | None) -> int | None:
    raw = (text or "").replace(" ", "").replace("\u202f", "")
    if not raw:
        return None
    if not raw.isdigit():
        raise ParseError("Un nombre entier est attendu.")
    return int(raw)
