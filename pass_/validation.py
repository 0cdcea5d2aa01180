"""Validation of French identifiers: SIRET (Luhn, La Poste's rule), INSEE commune codes, IBAN/BIC.

Each validator returns the normalised value or raises InvalidInput with a French message.
"""

from __future__ import annotations

import re

from schwifty import BIC, IBAN
from schwifty.exceptions import SchwiftyException

from kit.errors import InvalidInput

LA_POSTE_SIREN = "356000000"
# A commune code is its département (01–19, 2A, 2B, 21–95, or overseas 971–978, 984–989)
# followed by the commune's number, never 000 (a postal code such as 35000 is not a commune).
_INSEE = re.compile(
    r"^(?:(?:0[1-9]|1[0-9]|2[AB1-9]|[3-8][0-9]|9[0-5])(?!000)[0-9]{3}"
    r"|(?:97[1-8]|98[4-9])(?!00)[0-9]{2})$"
)


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def siret_ok(siret: str) -> bool:
    if not re.fullmatch(r"[0-9]{14}", siret):
        return False
    if siret.startswith(LA_POSTE_SIREN):
        # La Poste's establishments break Luhn; INSEE's rule: the digits sum to a multiple of 5
        # (the head office 35600000000048 passes Luhn as well).
        return luhn_ok(siret) or sum(int(c) for c in siret) % 5 == 0
    return luhn_ok(siret)


def validate_siret(value: str) -> str:
    siret = re.sub(r"[\s.]", "", value or "")
    if not re.fullmatch(r"[0-9]{14}", siret):
        raise InvalidInput(
            "Le SIRET doit comporter 14 chiffres.", code="invalid_siret", field="siret"
        )
    if not siret_ok(siret):
        raise InvalidInput(
            "Ce SIRET n'existe pas : la clé de contrôle ne correspond pas. "
            "Vérifiez les 14 chiffres.",
            code="invalid_siret",
            field="siret",
        )
    return siret


def validate_insee(value: str, field: str = "commune_insee") -> str:
    code = (value or "").strip().upper()
    if not _INSEE.fullmatch(code):
        raise InvalidInput(
            "Ce code commune INSEE n'est pas valide : 5 caractères, le département puis le "
            "numéro de la commune (par exemple 75056 pour Paris, 2A004 en Corse, 97411 à "
            "La Réunion) ; ce n'est pas le code postal.",
            code="invalid_insee",
            field=field,
        )
    return code


def validate_territory_code(value: str) -> str:
    """A département (2 or 3 characters: 75, 2A, 971) or an INSEE commune code."""
    code = (value or "").strip().upper()
    if re.fullmatch(r"(?:0[1-9]|1[0-9]|2[1-9AB]|[3-8][0-9]|9[0-5]|97[1-6])", code):
        return code
    return validate_insee(code, field="territory")


def validate_iban(value: str) -> str:
    try:
        return str(IBAN(value or "").compact)
    except SchwiftyException:
        raise InvalidInput(
            "Cet IBAN n'est pas valide : vérifiez les caractères et la clé.",
            code="invalid_iban",
            field="iban",
        ) from None


def validate_bic(value: str) -> str:
    try:
        return str(BIC(value or "").compact)
    except SchwiftyException:
        raise InvalidInput(
            "Ce BIC n'est pas valide (8 ou 11 caractères).", code="invalid_bic", field="bic"
        ) from None
