"""French identifiers: SIRET (Luhn and La Poste's rule), INSEE commune codes, IBAN and BIC."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kit.errors import InvalidInput
from pass_.validation import (
    luhn_ok,
    siret_ok,
    validate_bic,
    validate_iban,
    validate_insee,
    validate_siret,
    validate_territory_code,
)


def digit_sum(text: str) -> int:
    return sum(int(c) for c in text)


# ------------------------------------------------------------------------------------ SIRET


@pytest.mark.parametrize(
    "siret",
    [
        "73282932000074",  # a real establishment
        "44306184100047",
        "35600000000048",  # La Poste's head office passes Luhn too
        "732 829 320 00074",  # spaces as printed on invoices
        "732.829.320.00074",
    ],
)
def test_a_siret_whose_luhn_key_is_right_is_accepted(siret: str) -> None:
    assert validate_siret(siret) == siret.replace(" ", "").replace(".", "")


@pytest.mark.parametrize(
    "siret",
    [
        "73282932000075",  # last digit changed
        "73282932000047",  # two digits swapped
        "12345678901234",
    ],
)
def test_a_siret_whose_luhn_key_is_wrong_is_refused_with_a_french_message(siret: str) -> None:
    with pytest.raises(InvalidInput) as info:
        validate_siret(siret)
    assert info.value.code == "invalid_siret"
    assert "SIRET" in info.value.message and "clé de contrôle" in info.value.message
    assert info.value.details == {"field": "siret"}


@pytest.mark.parametrize("siret", ["", "7328293200007", "732829320000745", "7328293200007A"])
def test_a_siret_that_is_not_14_digits_is_refused(siret: str) -> None:
    with pytest.raises(InvalidInput) as info:
        validate_siret(siret)
    assert info.value.code == "invalid_siret"
    assert "14 chiffres" in info.value.message


@pytest.mark.parametrize("siret", ["35600000049837", "35600000010000", "35600000010014"])
def test_la_poste_establishments_with_a_digit_sum_multiple_of_5_are_valid_despite_luhn(
    siret: str,
) -> None:
    assert not luhn_ok(siret)  # the reason La Poste needs its own rule
    assert digit_sum(siret) % 5 == 0
    assert validate_siret(siret) == siret


def test_a_la_poste_establishment_failing_both_rules_is_refused() -> None:
    siret = "35600000010001"
    assert not luhn_ok(siret) and digit_sum(siret) % 5 != 0
    assert not siret_ok(siret)
    with pytest.raises(InvalidInput):
        validate_siret(siret)


def test_the_la_poste_rule_applies_to_la_poste_only() -> None:
    siret = "73282932010003"  # digits sum to a multiple of 5, Luhn fails, not La Poste
    assert not luhn_ok(siret) and digit_sum(siret) % 5 == 0
    assert not siret_ok(siret)


def luhn_key(body: str) -> str:
    """The digit that completes `body` into a Luhn-valid number (computed independently)."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch) * (2 if i % 2 == 0 else 1)  # the key will shift every position by one
        total += d - 9 if d > 9 else d
    return str((10 - total % 10) % 10)


@given(st.text(alphabet="0123456789", min_size=13, max_size=13))
def test_every_13_digit_body_has_exactly_one_luhn_key(body: str) -> None:
    valid = [d for d in "0123456789" if luhn_ok(body + d)]
    assert valid == [luhn_key(body)]
    if not body.startswith("356000000"):  # La Poste's rule accepts more
        assert [d for d in "0123456789" if siret_ok(body + d)] == valid


# ------------------------------------------------------------------------------------ INSEE


@pytest.mark.parametrize(
    ("value", "normalised"),
    [
        ("75056", "75056"),  # Paris
        ("35238", "35238"),  # Rennes
        ("01001", "01001"),
        ("2A004", "2A004"),  # Ajaccio, Corse-du-Sud
        ("2B033", "2B033"),  # Bastia, Haute-Corse
        ("2a004", "2A004"),
        (" 2b033 ", "2B033"),
        ("97105", "97105"),  # Basse-Terre, Guadeloupe
        ("97209", "97209"),  # Fort-de-France, Martinique
        ("97302", "97302"),  # Cayenne, Guyane
        ("97411", "97411"),  # Saint-Denis, La Réunion
        ("97611", "97611"),  # Mamoudzou, Mayotte
        ("97502", "97502"),  # Saint-Pierre, Saint-Pierre-et-Miquelon
    ],
)
def test_commune_codes_of_metropolitan_france_corsica_and_overseas_are_accepted(
    value: str, normalised: str
) -> None:
    assert validate_insee(value) == normalised


@pytest.mark.parametrize(
    "value",
    [
        "",
        "7505",  # too short
        "750566",  # too long
        "20004",  # Corsica has been 2A/2B since 1976
        "2C004",
        "00123",
        "96001",  # no département 96
        "99100",  # 99 codes are foreign countries, not communes
        "97901",
        "35000",  # a postal code, not a commune code
        "97100",
        "ABCDE",
        "75O56",
    ],
)
def test_malformed_commune_codes_are_refused(value: str) -> None:
    with pytest.raises(InvalidInput) as info:
        validate_insee(value)
    assert info.value.code == "invalid_insee"
    assert "INSEE" in info.value.message
    assert info.value.details == {"field": "commune_insee"}


@pytest.mark.parametrize("code", ["35", "2A", "2B", "971", "976", "35238"])
def test_territory_codes_are_departements_or_communes(code: str) -> None:
    assert validate_territory_code(code) == code


@pytest.mark.parametrize("code", ["20", "96", "97", "977", "3", "2C"])
def test_unknown_territory_codes_are_refused(code: str) -> None:
    with pytest.raises(InvalidInput) as info:
        validate_territory_code(code)
    assert info.value.details == {"field": "territory"}



# ------------------------------------------------------------------------------ IBAN and BIC


@pytest.mark.parametrize(
    ("value", "compact"),
    [
        ("FR7630006000011234567890189", "FR7630006000011234567890189"),
        ("FR76 3000 6000 0112 3456 7890 189", "FR7630006000011234567890189"),
        ("fr1420041010050500013m02606", "FR1420041010050500013M02606"),
        ("DE89370400440532013000", "DE89370400440532013000"),
    ],
)
def test_valid_ibans_are_accepted_and_compacted(value: str, compact: str) -> None:
    assert validate_iban(value) == compact


@pytest.mark.parametrize(
    "value",
    [
        "FR7630006000011234567890188",  # wrong check digits
        "FR763000600001123456789018",  # too short for France
        "XX7630006000011234567890189",  # no such country
        "",
        "not an iban",
    ],
)
def test_invalid_ibans_are_refused_with_a_french_message(value: str) -> None:
    with pytest.raises(InvalidInput) as info:
        validate_iban(value)
    assert info.value.code == "invalid_iban"
    assert "IBAN" in info.value.message
    assert info.value.details == {"field": "iban"}


@pytest.mark.parametrize(
    ("value", "compact"),
    [("AGRIFRPP", "AGRIFRPP"), ("agrifrppxxx", "AGRIFRPPXXX"), ("PSSTFRPPREN", "PSSTFRPPREN")],
)
def test_valid_bics_are_accepted(value: str, compact: str) -> None:
    assert validate_bic(value) == compact


@pytest.mark.parametrize("value", ["AGRIFRP", "AGRIZZPP", "AGRIFRPPX", ""])
def test_invalid_bics_are_refused(value: str) -> None:
    with pytest.raises(InvalidInput) as info:
        validate_bic(value)
    assert info.value.code == "invalid_bic"
    assert "BIC" in info.value.message
