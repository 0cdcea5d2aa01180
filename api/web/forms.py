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
