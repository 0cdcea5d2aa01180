"""Cheque serials for humans: `PN-XXXX-XXXX-XXXX-C`, random, typed when the camera fails.

Format decision (DESIGN.md §5 asks for ≥ 60 bits of randomness and a check character):

- 12 data symbols in Crockford base32 (`0-9 A-Z` without `I L O U`) carry exactly
  12 × 5 = **60 random bits** (`secrets.randbits(60)`); the visible `PN-XXXX-XXXX-XXXX` of the
  design card has only 12 symbols, which with a check symbol would leave 55 bits, so the serial
  grows by one symbol: **13 symbols to type, 19 characters printed** with the `PN` prefix and
  dashes, e.g. `PN-7K3Q-9ZD2-XW4M-R`.
- The check symbol `C` is taken from the same 32 symbols (no `*~$=U` as in Crockford's mod-37
  scheme: easy to type on a phone keypad). The 32 symbols are read as the elements of the field
  GF(32) (polynomial basis, modulus x⁵ + x² + 1, α = x of order 31) and a serial
  `s₁ … s₁₃` is valid when Σ α^(13−i)·sᵢ = 0, i.e. the check symbol is
  `s₁₃ = Σᵢ₌₁..₁₂ α^(13−i)·sᵢ` (addition is XOR).
  The weights α¹², …, α¹, α⁰ are non-zero and pairwise distinct, so in a field:
  * a substitution a → b at position i changes the sum by α^(13−i)·(a⊕b) ≠ 0;
  * a transposition of a ≠ b at positions i, j (adjacent or not) changes it by
    (α^(13−i) ⊕ α^(13−j))·(a⊕b) ≠ 0;
  * likewise a "twin" error aa → bb at adjacent positions.
  Every single-character substitution and every transposition is therefore detected (the tests
  check it exhaustively); any other damage goes unnoticed with probability 1/32.
- Typing is forgiving: any case, spaces and dashes optional, the `PN` prefix optional, and
  Crockford's aliases `O → 0`, `I`/`L → 1`.

Guessing is hopeless: 2⁶⁰ ≈ 1.2 × 10¹⁸ serials for about 2 × 10⁷ cheques a year, so a guess hits
an existing cheque with probability below 2 × 10⁻¹¹, before rate limiting.
"""

from __future__ import annotations

import re
import secrets

from kit.errors import InvalidInput

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
DATA_SYMBOLS = 12
CHECK_SYMBOLS = 1
SYMBOLS = DATA_SYMBOLS + CHECK_SYMBOLS  # what a person types (13)
RANDOM_BITS = DATA_SYMBOLS * 5  # 60
PREFIX = "PN"
SERIAL_LENGTH = len(PREFIX) + SYMBOLS + 4  # 19: "PN-XXXX-XXXX-XXXX-C"

_VALUE = {symbol: value for value, symbol in enumerate(ALPHABET)}
_ALIASES = str.maketrans({"O": "0", "I": "1", "L": "1"})
# Separators people (and phone keyboards) put in: spaces, dashes of every width, dots.
_SEPARATORS = re.compile(r"[\s\-‐‑‒–—−_.]+")
_SERIAL_LIKE = re.compile(r"[0-9A-Za-z]{1,24}")


class InvalidSerial(InvalidInput):
    code = "invalid_serial"
    message = (
        "Ce code de chèque n'est pas valide : il doit avoir la forme PN-XXXX-XXXX-XXXX-X "
        "(13 lettres ou chiffres)."
    )


class SerialTypo(InvalidInput):
    code = "serial_check_failed"
    message = "Le code saisi contient une erreur de frappe : vérifiez chaque caractère."


def _gf32_mul(a: int, b: int) -> int:
    """Multiplication in GF(2⁵) modulo x⁵ + x² + 1 (0b100101), a primitive polynomial."""
    product = 0
    while b:
        if b & 1:
            product ^= a
        b >>= 1
        a <<= 1
        if a & 0b100000:
            a ^= 0b100101
    return product


def _alpha_power(n: int) -> int:
    value = 1
    for _ in range(n):
        value = _gf32_mul(value, 2)
    return value


# WEIGHTS[i] is α^(12−i) for the symbol at index i (0-based, the check symbol last, weight 1).
WEIGHTS = tuple(_alpha_power(SYMBOLS - 1 - i) for i in range(SYMBOLS))
# _TIMES[i][v] = WEIGHTS[i]·v, so a checksum is 13 table look-ups and XORs.
_TIMES = tuple(tuple(_gf32_mul(w, v) for v in range(32)) for w in WEIGHTS)


def syndrome(symbols: str) -> int:
    """Σ weightᵢ·sᵢ over GF(32) for the 13 canonical symbols; 0 for a valid serial."""
    total = 0
    for times, symbol in zip(_TIMES, symbols, strict=True):
        total ^= times[_VALUE[symbol]]
    return total


def check_symbol(data: str) -> str:
    """The check symbol that completes 12 canonical data symbols into a valid serial."""
    if len(data) != DATA_SYMBOLS:
        raise ValueError("12 data symbols expected")
    # The check symbol has weight α⁰ = 1 and −x = x in characteristic 2.
    return ALPHABET[syndrome(data + "0")]


def serial_from_bits(bits: int) -> str:
    """The serial whose 60 data bits are `bits` (the inverse of `serial_bits`)."""
    if not 0 <= bits < 1 << RANDOM_BITS:
        raise ValueError("a serial carries 60 bits")
    data = "".join(ALPHABET[(bits >> (5 * (DATA_SYMBOLS - 1 - i))) & 31] for i in range(12))
    return _format(data + check_symbol(data))


def serial_bits(serial: str) -> int:
    """The 60 data bits of a canonical serial (normalise user input first)."""
    symbols = _symbols_of_canonical(serial)
    bits = 0
    for symbol in symbols[:DATA_SYMBOLS]:
        bits = (bits << 5) | _VALUE[symbol]
    return bits


def new_serial() -> str:
    """A fresh serial with 60 bits from the operating system's CSPRNG."""
    return serial_from_bits(secrets.randbits(RANDOM_BITS))


def normalise_serial(text: str) -> str:
    """The canonical `PN-XXXX-XXXX-XXXX-C` form of what a person typed.

    Raises `InvalidSerial` when it cannot be a serial (length, characters) and `SerialTypo` when
    it has the right shape but the check symbol disagrees (a typing mistake).
    """
    if not isinstance(text, str):
        raise InvalidSerial()
    compact = _SEPARATORS.sub("", text).upper()
    if len(compact) == len(PREFIX) + SYMBOLS and compact.startswith(PREFIX):
        compact = compact[len(PREFIX) :]
    compact = compact.translate(_ALIASES)
    if len(compact) != SYMBOLS or any(symbol not in _VALUE for symbol in compact):
        raise InvalidSerial()
    if syndrome(compact) != 0:
        raise SerialTypo()
    return _format(compact)


def is_serial_like(text: str) -> bool:
    """Whether `text` was typed as a serial (short, letters and digits) rather than a QR token.

    A wrong serial still counts as serial-like, so the person gets the serial's error message
    (`invalid_serial`, `serial_check_failed`) rather than the token's.
    """
    if not isinstance(text, str) or len(text) > 64:
        return False
    return _SERIAL_LIKE.fullmatch(_SEPARATORS.sub("", text)) is not None


def _format(symbols: str) -> str:
    return f"{PREFIX}-{symbols[0:4]}-{symbols[4:8]}-{symbols[8:12]}-{symbols[12]}"


def _symbols_of_canonical(serial: str) -> str:
    if (
        len(serial) != SERIAL_LENGTH
        or not serial.startswith(PREFIX + "-")
        or serial[7] != "-"
        or serial[12] != "-"
        or serial[17] != "-"
    ):
        raise InvalidSerial()
    symbols = serial[3:7] + serial[8:12] + serial[13:17] + serial[18]
    if any(symbol not in _VALUE for symbol in symbols) or syndrome(symbols) != 0:
        raise InvalidSerial()
    return symbols
