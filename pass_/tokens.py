"""Signed cheque tokens for the QR code, and the Ed25519 keyring that signs and verifies them.

A token is `PN1:` followed by the RFC 4648 base32 (upper case, no padding) of 85 bytes:

    payload (21 bytes, big-endian)                      signature (64 bytes)
    version u8 | kid u16 | serial u64 (60 bits used) |  Ed25519 over b"PN1:" + payload
    programme_id u32 | value_cents u32 | redeem_until u16 (days since 1970-01-01)

so every token is exactly 140 characters. Why this shape rather than a JWT (234 characters for
the same claims, a version-11 QR):
- base32 uses only `A-Z 2-7`, which QR codes store in *alphanumeric* mode (5.5 bits a
  character) where base64url needs *byte* mode (8 bits); 140 alphanumeric characters fit a
  version 6-M symbol (41 × 41 modules, 15 % of it recoverable), the same version as base45
  (130 characters) and smaller than base64url (118 characters in byte mode: version 7-M);
- unlike base45 (space, `%`, `/`), base32 is safe as is in a URL path
  (`GET /api/v1/cheques/{code}`), in a form field and in a log line;
- the `PN1:` prefix tells scanners (and `pass_.codes.is_serial_like`) a token from a typed
  serial, and is signed with the payload, so a token cannot be replayed under another version.

The key id is 2 bytes, written as 4 hex digits: the first two bytes of SHA-256 of the public key.
Keys live in a directory (0700), one PKCS #8 PEM file per key (0600) and a file `active` naming
the signing key; rotating adds a key and keeps the old ones for verification, so issued cheques
stay valid; retiring a key removes it (its tokens then fail). The public keys are published as a
JWKS (RFC 8037 OKP keys), enough for a phone to check a token offline (`verify_with_jwks`).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import os
import re
import struct
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from kit.errors import Conflict, DomainError, InvalidInput, NotFound
from pass_.codes import serial_bits, serial_from_bits

PREFIX = "PN1:"
VERSION = 1
_PAYLOAD = struct.Struct(">BHQIIH")
_SIGNATURE_BYTES = 64
_RAW_BYTES = _PAYLOAD.size + _SIGNATURE_BYTES  # 85, a multiple of 5: base32 needs no padding
TOKEN_LENGTH = len(PREFIX) + _RAW_BYTES * 8 // 5  # 140
_BASE32_BODY = re.compile(f"[A-Za-z2-7]{{{_RAW_BYTES * 8 // 5}}}")
# RFC 4648's alphabet (either case) onto the digits of int(…, 32): A→0 … Z→25, 2→26 … 7→31.
_BASE32_AS_DIGITS = str.maketrans(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567abcdefghijklmnopqrstuvwxyz",
    "0123456789abcdefghijklmnopqrstuv0123456789abcdefghijklmnop",
)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_MAX_DAYS = 0xFFFF
_ACTIVE_FILE = "active"
_LOCK_FILE = ".lock"
_KEY_SUFFIX = ".pem"
# After an unknown kid, look at the directory again at most this often (another process may
# have rotated); a flood of forged kids then costs one directory listing a second.
_RELOAD_INTERVAL_S = 1.0


class InvalidToken(InvalidInput):
    code = "invalid_token"
    message = "Ce QR code n'est pas un chèque Pass numérique valide."


class UnknownKey(NotFound):
    code = "unknown_key"
    message = "Cette clé de signature n'existe pas."


class ActiveKeyRetirement(Conflict):
    code = "active_key_retirement"
    message = "La clé de signature active ne peut pas être retirée : faites d'abord une rotation."


class KeyringCorrupted(DomainError):
    code = "keyring_corrupted"
    message = "Le trousseau de clés de signature est incohérent."


@dataclass(frozen=True, slots=True)
class ChequeClaims:
    """What a token says about its cheque. `kid` is set by `verify`; `sign` ignores it."""

    serial: str
    programme_id: int
    value_cents: int
    redeem_until: date
    kid: str = ""


def _kid_of(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).digest()[:2].hex()


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _pack(claims: ChequeClaims, kid: str) -> bytes:
    days = claims.redeem_until.toordinal() - _EPOCH_ORDINAL
    if not 0 <= days <= _MAX_DAYS:
        raise ValueError("redeem_until out of range (1970–2149)")
    if not 0 < claims.programme_id < 1 << 32:
        raise ValueError("programme_id out of range")
    if not 0 < claims.value_cents < 1 << 32:
        raise ValueError("value_cents out of range")
    return _PAYLOAD.pack(
        VERSION,
        int(kid, 16),
        serial_bits(claims.serial),
        claims.programme_id,
        claims.value_cents,
        days,
    )


def _split(token: object) -> tuple[str, bytes, bytes, tuple[int, ...]]:
    """(kid, signed message, signature, fields) of a well-formed token, or InvalidToken."""
    if not isinstance(token, str):
        raise InvalidToken()
    text = token.strip()
    if len(text) != TOKEN_LENGTH or text[: len(PREFIX)].upper() != PREFIX:
        raise InvalidToken()
    body = text[len(PREFIX) :]
    if not _BASE32_BODY.fullmatch(body):  # bad characters, non-ASCII
        raise InvalidToken()
    # RFC 4648 base32 read as a base-32 integer (C speed; base64.b32decode is pure Python
    # and was a tenth of a redemption's CPU): each symbol is 5 bits, 136 symbols 85 bytes.
    raw = int(body.translate(_BASE32_AS_DIGITS), 32).to_bytes(_RAW_BYTES, "big")
    payload, signature = raw[: _PAYLOAD.size], raw[_PAYLOAD.size :]
    fields = _PAYLOAD.unpack(payload)
    if fields[0] != VERSION:
        raise InvalidToken()
    return f"{fields[1]:04x}", PREFIX.encode("ascii") + payload, signature, fields


def _claims(fields: tuple[int, ...], kid: str) -> ChequeClaims:
    _version, _kid, bits, programme_id, value_cents, days = fields
    # Only a holder of the key could have produced these, but a bug there must not become a 500.
    if bits >> 60 or programme_id == 0 or value_cents == 0:
        raise InvalidToken()
    return ChequeClaims(
        serial=serial_from_bits(bits),
        programme_id=programme_id,
        value_cents=value_cents,
        redeem_until=date.fromordinal(_EPOCH_ORDINAL + days),
        kid=kid,
    )


def _check(public_key: Ed25519PublicKey | None, message: bytes, signature: bytes) -> None:
    if public_key is None:
        raise InvalidToken()
    try:
        public_key.verify(signature, message)
    except InvalidSignature:
        raise InvalidToken() from None


def read_unverified(token: str) -> ChequeClaims:
    """What a well-formed token *states*, without checking its signature (`InvalidToken` if it
    is not even well formed). Never trust the result on its own: it is for a caller that then
    compares the whole token with the one stored for that cheque at issuance (an exact copy of
    a token we signed needs no signature check), and verifies any other token."""
    kid, _message, _signature, fields = _split(token)
    return _claims(fields, kid)


def verify_with_jwks(token: str, jwks: Mapping[str, Any]) -> ChequeClaims:
    """Check a token against published public keys only, as an offline scanner does."""
    kid, message, signature, fields = _split(token)
    public_key = None
    keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
    for jwk in keys if isinstance(keys, list) else []:
        if (
            isinstance(jwk, Mapping)
            and jwk.get("kid") == kid
            and jwk.get("kty") == "OKP"
            and jwk.get("crv") == "Ed25519"
            and isinstance(jwk.get("x"), str)
        ):
            try:
                raw = base64.urlsafe_b64decode(jwk["x"] + "=" * (-len(jwk["x"]) % 4))
                public_key = Ed25519PublicKey.from_public_bytes(raw)
            except ValueError:
                continue
            break
    _check(public_key, message, signature)
    return _claims(fields, kid)


class Keyring:
    """The cheque-signing keys kept in a directory; safe to share between processes."""

    def __init__(self, keys_dir: Path) -> None:
        self.keys_dir = Path(keys_dir)
        self._keys: dict[str, Ed25519PrivateKey] = {}
        self._public: dict[str, Ed25519PublicKey] = {}
        self._active = ""
        self._seen_mtime = -1
        self._last_forced_reload = float("-inf")
        self._reload()

    # --- creation and rotation ---------------------------------------------------------

    @classmethod
    def load_or_create(cls, path: Path) -> Keyring:
        """The keyring in `path`, creating the directory and a first key if there is none."""
        path = Path(path)
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask
        with _locked(path):
            if not any(path.glob(f"*{_KEY_SUFFIX}")):
                kid = _write_new_key(path, taken=set())
                _write_active(path, kid)
        return cls(path)

    def rotate(self) -> str:
        """Add a key and make it the signing key; older keys keep verifying. Returns its kid."""
        with _locked(self.keys_dir):
            self._reload()
            kid = _write_new_key(self.keys_dir, taken=set(self._keys))
            _write_active(self.keys_dir, kid)
            self._reload()
        return kid

    def retire(self, kid: str) -> None:
        """Delete a key: tokens it signed no longer verify. The active key cannot be retired."""
        with _locked(self.keys_dir):
            self._reload()
            if kid not in self._keys:
                raise UnknownKey(kid=kid)
            if kid == self._active:
                raise ActiveKeyRetirement(kid=kid)
            (self.keys_dir / f"{kid}{_KEY_SUFFIX}").unlink()
            self._reload()

    # --- reading -------------------------------------------------------------------------

    @property
    def active_kid(self) -> str:
        self._refresh()
        return self._active

    @property
    def kids(self) -> list[str]:
        self._refresh()
        return sorted(self._keys)

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The public keys, for `GET /.well-known/jwks.json` (never any private part)."""
        self._refresh()
        keys = []
        for kid in sorted(self._public):
            raw = self._public[kid].public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
            keys.append(
                {
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": _b64url(raw),
                    "kid": kid,
                    "use": "sig",
                    "alg": "EdDSA",
                }
            )
        return {"keys": keys}

    def sign(self, claims: ChequeClaims) -> str:
        """The token of a cheque, signed with the active key."""
        self._refresh()
        return self._sign(claims, self._active, self._keys[self._active])

    def sign_many(self, claims: Iterable[ChequeClaims]) -> list[str]:
        """Tokens for many cheques (a booklet, a bulk order), all with the active key."""
        self._refresh()
        kid, key = self._active, self._keys[self._active]
        return [self._sign(c, kid, key) for c in claims]

    def verify(self, token: str) -> ChequeClaims:
        """The claims of a genuine token; `InvalidToken` for anything else, whatever it is."""
        kid, message, signature, fields = _split(token)
        self._refresh()
        if kid not in self._public and time.monotonic() - self._last_forced_reload > (
            _RELOAD_INTERVAL_S
        ):
            # Another process may have rotated within the directory's timestamp granularity.
            self._last_forced_reload = time.monotonic()
            self._reload()
        _check(self._public.get(kid), message, signature)
        return _claims(fields, kid)

    def knows(self, kid: str) -> bool:
        """Whether tokens signed by `kid` still verify (the key exists, not retired)."""
        self._refresh()
        return kid in self._public

    # --- internals -----------------------------------------------------------------------

    @staticmethod
    def _sign(claims: ChequeClaims, kid: str, key: Ed25519PrivateKey) -> str:
        payload = _pack(claims, kid)
        signature = key.sign(PREFIX.encode("ascii") + payload)
        return PREFIX + base64.b32encode(payload + signature).decode("ascii")

    def _refresh(self) -> None:
        # One stat a call: adding, renaming or deleting a file changes the directory's mtime.
        if os.stat(self.keys_dir).st_mtime_ns != self._seen_mtime:
            self._reload()

    def _reload(self) -> None:
        mtime = os.stat(self.keys_dir).st_mtime_ns
        keys: dict[str, Ed25519PrivateKey] = {}
        for file in sorted(self.keys_dir.glob(f"*{_KEY_SUFFIX}")):
            key = serialization.load_pem_private_key(file.read_bytes(), password=None)
            if not isinstance(key, Ed25519PrivateKey):
                raise KeyringCorrupted(file=file.name)
            kid = _kid_of(key.public_key())
            if file.name != f"{kid}{_KEY_SUFFIX}":
                raise KeyringCorrupted(file=file.name)
            keys[kid] = key
        active_file = self.keys_dir / _ACTIVE_FILE
        active = active_file.read_text().strip() if active_file.exists() else ""
        if active not in keys:
            if not keys:
                raise KeyringCorrupted(reason="no key")
            # A crash between writing a key and pointing `active` at it: take the newest key.
            active = max(keys, key=lambda k: (self.keys_dir / f"{k}{_KEY_SUFFIX}").stat().st_mtime)
        self._keys = keys
        self._public = {kid: key.public_key() for kid, key in keys.items()}
        self._active = active
        self._seen_mtime = mtime


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise changes to the keyring between processes."""
    fd = os.open(path / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write_new_key(path: Path, *, taken: set[str]) -> str:
    while True:
        key = Ed25519PrivateKey.generate()
        kid = _kid_of(key.public_key())
        if kid not in taken and not (path / f"{kid}{_KEY_SUFFIX}").exists():
            break
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_private(path / f"{kid}{_KEY_SUFFIX}", pem)
    return kid


def _write_active(path: Path, kid: str) -> None:
    _write_private(path / _ACTIVE_FILE, kid.encode("ascii") + b"\n")


def _write_private(target: Path, content: bytes) -> None:
    """Write a 0600 file atomically (temporary file, fsync, rename)."""
    tmp = target.with_name(f".{target.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, content)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target)
