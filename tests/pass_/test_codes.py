"""Cheque serials: format, randomness, normalisation and the check symbol's guarantees."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pass_ import codes
from pass_.codes import (
    ALPHABET,
    InvalidSerial,
    SerialTypo,
    is_serial_like,
    new_serial,
    normalise_serial,
    serial_bits,
    serial_from_bits,
)

CANONICAL = re.compile(
    r"PN-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-"
    r"[0-9A-HJKMNP-TV-Z]"
)

serials = st.integers(min_value=0, max_value=(1 << 60) - 1).map(serial_from_bits)


def symbols_of(serial: str) -> str:
    return serial[3:].replace("-", "")


def is_accepted(symbols: str) -> bool:
    try:
        normalise_serial(symbols)
    except (InvalidSerial, SerialTypo):
        return False
    return True


def test_a_serial_carries_at_least_60_random_bits_in_13_typed_symbols() -> None:
    assert codes.RANDOM_BITS >= 60
    assert codes.DATA_SYMBOLS * 5 == codes.RANDOM_BITS  # Crockford base32: 5 bits a symbol
    assert len(ALPHABET) == 32 and len(set(ALPHABET)) == 32
    assert codes.SYMBOLS == 13
    serial = new_serial()
    assert CANONICAL.fullmatch(serial)
    assert len(serial) == codes.SERIAL_LENGTH == 19


def test_new_serials_use_the_whole_60_bits() -> None:
    drawn = [serial_bits(new_serial()) for _ in range(2000)]
    assert len(set(drawn)) == len(drawn)
    assert all(0 <= bits < 1 << 60 for bits in drawn)
    # Every one of the 60 bits is sometimes 0, sometimes 1 (a fixed bit would halve the space).
    ored, anded = 0, (1 << 60) - 1
    for bits in drawn:
        ored |= bits
        anded &= bits
    assert ored == (1 << 60) - 1 and anded == 0


@given(st.integers(min_value=0, max_value=(1 << 60) - 1))
def test_serial_bits_round_trip(bits: int) -> None:
    serial = serial_from_bits(bits)
    assert CANONICAL.fullmatch(serial)
    assert serial_bits(serial) == bits
    assert normalise_serial(serial) == serial


def test_the_check_symbol_catches_every_substitution_and_transposition_exhaustively() -> None:
    """The checksum is linear over GF(32): whether an error is caught depends only on the
    positions and the symbols changed, not on the rest of the serial. So checking every
    position and every pair of symbols on one serial proves it for all serials."""
    base = symbols_of(serial_from_bits(0x0123456789ABCDE))
    for position in range(codes.SYMBOLS):
        for wrong in ALPHABET:
            if wrong != base[position]:
                typo = base[:position] + wrong + base[position + 1 :]
                assert codes.syndrome(typo) != 0, (position, wrong)
    for i, j in itertools.combinations(range(codes.SYMBOLS), 2):
        for a, b in itertools.permutations(ALPHABET, 2):
            # a at i and b at j, swapped: detected (adjacent or not).
            good = base[:i] + a + base[i + 1 : j] + b + base[j + 1 :]
            delta = codes.syndrome(good) ^ codes.syndrome(
                base[:i] + b + base[i + 1 : j] + a + base[j + 1 :]
            )
            assert delta != 0, (i, j, a, b)


def test_the_check_symbol_catches_twin_errors() -> None:
    base = symbols_of(serial_from_bits(0xFEDCBA987654321))
    for i in range(codes.SYMBOLS - 1):
        for a, b in itertools.permutations(ALPHABET, 2):
            one = base[:i] + a + a + base[i + 2 :]
            other = base[:i] + b + b + base[i + 2 :]
            assert codes.syndrome(one) != codes.syndrome(other)


@given(serials, st.integers(min_value=0, max_value=12), st.sampled_from(ALPHABET))
def test_any_single_substitution_is_reported_as_a_typo(
    serial: str, position: int, wrong: str
) -> None:
    symbols = symbols_of(serial)
    if wrong == symbols[position]:
        return
    typo = symbols[:position] + wrong + symbols[position + 1 :]
    with pytest.raises(SerialTypo) as raised:
        normalise_serial(typo)
    assert raised.value.code == "serial_check_failed"
    assert "erreur de frappe" in raised.value.message


@given(serials, st.integers(min_value=0, max_value=11))
def test_any_adjacent_transposition_is_reported_as_a_typo(serial: str, position: int) -> None:
    symbols = symbols_of(serial)
    a, b = symbols[position], symbols[position + 1]
    if a == b:
        return
    swapped = symbols[:position] + b + a + symbols[position + 2 :]
    with pytest.raises(SerialTypo):
        normalise_serial(swapped)


@given(serials)
def test_typing_is_forgiving_about_case_spaces_dashes_prefix_and_lookalikes(serial: str) -> None:
    symbols = symbols_of(serial)
    spaced = " ".join(symbols[i : i + 4] for i in range(0, 13, 4))
    lookalike = symbols.replace("0", "O").replace("1", "l")
    for typed in (
        serial,
        serial.lower(),
        symbols,
        symbols.lower(),
        f"pn {spaced}",
        f"  PN-{spaced.replace(' ', '–')}  ",
        lookalike,
        "PN" + symbols.replace("1", "I").lower(),
    ):
        assert normalise_serial(typed) == serial, typed


@pytest.mark.parametrize(
    "typed",
    [
        "",
        "PN",
        "PN-1234-5678",
        "PN-0000-0000-0000-00",
        "PN-0000-0000-0000-U",
        "PM-0000-0000-0000-0",
        "😀" * 13,
        "PN-0000-0000-0000-!",
        "0" * 14,
        None,
    ],
)
def test_a_malformed_serial_is_invalid_not_a_typo(typed: str) -> None:
    with pytest.raises(InvalidSerial) as raised:
        normalise_serial(typed)
    assert raised.value.code == "invalid_serial"
    assert raised.value.message.startswith("Ce code de chèque n'est pas valide")


def test_a_serial_with_a_wrong_check_symbol_is_a_typo() -> None:
    serial = serial_from_bits(42)
    wrong = next(s for s in ALPHABET if s != serial[-1])
    with pytest.raises(SerialTypo):
        normalise_serial(serial[:-1] + wrong)


def test_serial_like_tells_typed_codes_from_qr_tokens() -> None:
    serial = new_serial()
    assert is_serial_like(serial)
    assert is_serial_like(serial.lower().replace("-", " "))
    assert is_serial_like("PN-1234")  # a wrong serial still gets the serial's error
    token = "PN1:" + "A" * 136
    assert not is_serial_like(token)
    assert not is_serial_like("PN1:ABC")
    assert not is_serial_like("")
    assert not is_serial_like("x" * 5000)
