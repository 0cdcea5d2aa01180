"""Signed cheque tokens: round trip, tampering, junk, key rotation, offline JWKS checks."""

from __future__ import annotations

import base64
import json
import stat
from datetime import date, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pass_ import qr
from pass_.codes import new_serial, serial_from_bits
from pass_.tokens import (
    PREFIX,
    TOKEN_LENGTH,
    ActiveKeyRetirement,
    ChequeClaims,
    InvalidToken,
    Keyring,
    UnknownKey,
    verify_with_jwks,
)


@pytest.fixture(scope="module")
def keyring(tmp_path_factory: pytest.TempPathFactory) -> Keyring:
    return Keyring.load_or_create(tmp_path_factory.mktemp("keys") / "cheque-keys")


def claims(**overrides: object) -> ChequeClaims:
    values: dict[str, object] = {
        "serial": new_serial(),
        "programme_id": 12,
        "value_cents": 1000,
        "redeem_until": date(2026, 1, 31),
    }
    values.update(overrides)
    return ChequeClaims(**values)  # type: ignore[arg-type]


def decoded(token: str) -> bytearray:
    return bytearray(base64.b32decode(token[len(PREFIX) :]))


def encoded(raw: bytes) -> str:
    return PREFIX + base64.b32encode(bytes(raw)).decode()


claims_strategy = st.builds(
    ChequeClaims,
    serial=st.integers(min_value=0, max_value=(1 << 60) - 1).map(serial_from_bits),
    programme_id=st.integers(min_value=1, max_value=(1 << 32) - 1),
    value_cents=st.integers(min_value=1, max_value=(1 << 32) - 1),
    redeem_until=st.dates(min_value=date(1970, 1, 1), max_value=date(2149, 6, 6)),
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(claims_strategy)
def test_a_signed_token_verifies_back_to_its_claims(keyring: Keyring, c: ChequeClaims) -> None:
    token = keyring.sign(c)
    assert len(token) == TOKEN_LENGTH <= 160
    assert token.startswith("PN1:")
    assert qr.fits(token)  # QR alphanumeric characters only: a version 6-M symbol
    back = keyring.verify(token)
    assert back == ChequeClaims(
        c.serial, c.programme_id, c.value_cents, c.redeem_until, kid=keyring.active_kid
    )


def test_a_token_is_140_characters_safe_in_a_url_and_a_version_6_qr(keyring: Keyring) -> None:
    token = keyring.sign(claims())
    assert len(token) == 140
    assert set(token[len(PREFIX) :]) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
    assert len(qr.rows(token)) == 41  # version 6


def test_sign_many_signs_like_sign(keyring: Keyring) -> None:
    batch = [claims(programme_id=i + 1) for i in range(20)]
    tokens = keyring.sign_many(batch)
    assert [keyring.verify(t).programme_id for t in tokens] == list(range(1, 21))


def test_scanners_may_add_whitespace_or_lower_the_case(keyring: Keyring) -> None:
    c = claims()
    token = keyring.sign(c)
    assert keyring.verify(f"  {token}\n").serial == c.serial
    assert keyring.verify(token.lower()).serial == c.serial


def test_changing_any_byte_of_the_payload_or_signature_invalidates_the_token(
    keyring: Keyring,
) -> None:
    token = keyring.sign(claims())
    raw = decoded(token)
    for index in range(len(raw)):
        for flip in (0x01, 0x80, 0xFF):
            altered = bytearray(raw)
            altered[index] ^= flip
            with pytest.raises(InvalidToken):
                keyring.verify(encoded(altered))


def test_a_token_with_a_higher_value_or_later_date_is_refused(keyring: Keyring) -> None:
    c = claims(value_cents=1000)
    raw = decoded(keyring.sign(c))
    raw[15:19] = (100_000).to_bytes(4, "big")  # value_cents
    with pytest.raises(InvalidToken):
        keyring.verify(encoded(raw))


def test_the_prefix_is_signed_too(keyring: Keyring) -> None:
    token = keyring.sign(claims())
    with pytest.raises(InvalidToken):
        keyring.verify("PN2:" + token[4:])


def test_truncated_and_extended_tokens_are_invalid(keyring: Keyring) -> None:
    token = keyring.sign(claims())
    for cut in range(len(token)):
        with pytest.raises(InvalidToken):
            keyring.verify(token[:cut])
    for extra in ("A", "AAAAAAAA", "=", "===="):
        with pytest.raises(InvalidToken):
            keyring.verify(token + extra)


@pytest.mark.parametrize(
    "junk",
    [
        "",
        " ",
        "PN1:",
        "x" * 5000,
        "PN1:" + "A" * 5000,
        "\x00\x01\x02\x1b[31m",
        "PN1:" + "\x00" * 136,
        "'; DROP TABLE cheque; --",
        "PN1:' OR 1=1 --" + "A" * 121,
        "PN1:" + "é" * 136,
        "PN1:" + "😀" * 136,
        "PN1:" + "1" * 136,  # not base32 (1 is not in the alphabet)
        "PN1:" + "A" * 135 + "=",
        "eyJhbGciOiJFZERTQSJ9.eyJzIjoiUE4ifQ.c2ln",
        "PN-0000-0000-0000-0",
        None,
        12345,
        b"PN1:AAAA",
    ],
)
def test_junk_of_any_kind_is_an_invalid_token(keyring: Keyring, junk: object) -> None:
    with pytest.raises(InvalidToken) as raised:
        keyring.verify(junk)  # type: ignore[arg-type]
    assert raised.value.code == "invalid_token"
    assert "QR code" in raised.value.message
    with pytest.raises(InvalidToken):
        verify_with_jwks(junk, keyring.jwks())  # type: ignore[arg-type]


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.one_of(
        st.text(max_size=300),
        st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", min_size=136, max_size=136).map(
            lambda body: PREFIX + body
        ),
    )
)
def test_random_text_is_always_an_invalid_token_never_another_error(
    keyring: Keyring, text: str
) -> None:
    with pytest.raises(InvalidToken):
        keyring.verify(text)


def test_a_token_signed_by_an_unknown_key_is_invalid(keyring: Keyring, tmp_path: Path) -> None:
    stranger = Keyring.load_or_create(tmp_path / "other")
    token = stranger.sign(claims())
    with pytest.raises(InvalidToken):
        keyring.verify(token)
    # Same kid, other key: a forged kid does not help.
    raw = decoded(token)
    raw[1:3] = bytes.fromhex(keyring.active_kid)
    with pytest.raises(InvalidToken):
        keyring.verify(encoded(raw))


def test_rotation_keeps_old_tokens_valid_and_retiring_a_key_invalidates_them(
    tmp_path: Path,
) -> None:
    ring = Keyring.load_or_create(tmp_path / "keys")
    first_kid = ring.active_kid
    old = ring.sign(claims())
    new_kid = ring.rotate()
    assert new_kid != first_kid and ring.active_kid == new_kid
    assert ring.kids == sorted([first_kid, new_kid])
    new = ring.sign(claims())
    assert ring.verify(old).kid == first_kid
    assert ring.verify(new).kid == new_kid
    with pytest.raises(ActiveKeyRetirement):
        ring.retire(new_kid)
    with pytest.raises(UnknownKey):
        ring.retire("ffff" if first_kid != "ffff" else "0000")
    ring.retire(first_kid)
    assert ring.kids == [new_kid]
    with pytest.raises(InvalidToken):
        ring.verify(old)
    assert ring.verify(new).kid == new_kid


def test_another_process_sees_rotation_and_retirement_through_the_directory(
    tmp_path: Path,
) -> None:
    server = Keyring.load_or_create(tmp_path / "keys")
    cli = Keyring.load_or_create(tmp_path / "keys")  # e.g. `passnum keys rotate`
    assert cli.active_kid == server.active_kid
    old_kid = server.active_kid
    old = server.sign(claims())
    new_kid = cli.rotate()
    fresh = cli.sign(claims())
    assert server.verify(fresh).kid == new_kid  # the server never saw this key being made
    assert server.active_kid == new_kid
    cli.retire(old_kid)
    with pytest.raises(InvalidToken):
        server.verify(old)


def test_reloading_a_keyring_directory_keeps_the_same_keys(tmp_path: Path) -> None:
    ring = Keyring.load_or_create(tmp_path / "keys")
    ring.rotate()
    token = ring.sign(claims())
    again = Keyring.load_or_create(tmp_path / "keys")
    assert again.kids == ring.kids and again.active_kid == ring.active_kid
    assert again.verify(token).kid == ring.active_kid


def test_private_keys_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    ring = Keyring.load_or_create(tmp_path / "keys")
    ring.rotate()
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    key_files = list((tmp_path / "keys").glob("*.pem"))
    assert len(key_files) == 2
    for file in key_files:
        assert stat.S_IMODE(file.stat().st_mode) == 0o600
        assert b"PRIVATE KEY" in file.read_bytes()


def test_the_jwks_publishes_every_public_key_and_nothing_private(tmp_path: Path) -> None:
    ring = Keyring.load_or_create(tmp_path / "keys")
    ring.rotate()
    jwks = json.loads(json.dumps(ring.jwks()))
    assert sorted(k["kid"] for k in jwks["keys"]) == ring.kids
    for key in jwks["keys"]:
        assert set(key) == {"kty", "crv", "x", "kid", "use", "alg"}
        assert (key["kty"], key["crv"], key["use"], key["alg"]) == (
            "OKP",
            "Ed25519",
            "sig",
            "EdDSA",
        )
        assert len(base64.urlsafe_b64decode(key["x"] + "=")) == 32
        assert len(key["kid"]) == 4


def test_the_jwks_alone_suffices_to_check_a_token_offline(keyring: Keyring) -> None:
    c = claims(value_cents=500, redeem_until=date(2027, 1, 31) + timedelta(days=1))
    token = keyring.sign(c)
    jwks = json.loads(json.dumps(keyring.jwks()))  # what a phone downloaded earlier
    offline = verify_with_jwks(token, jwks)
    assert (offline.serial, offline.value_cents, offline.redeem_until) == (
        c.serial,
        500,
        date(2027, 2, 1),
    )
    raw = decoded(token)
    raw[-1] ^= 1
    with pytest.raises(InvalidToken):
        verify_with_jwks(encoded(raw), jwks)
    for broken in (
        {},
        {"keys": "nope"},
        {"keys": [{"kid": keyring.active_kid}]},
        {"keys": [{**jwks["keys"][0], "x": "!!"}]},
        [],
    ):
        with pytest.raises(InvalidToken):
            verify_with_jwks(token, broken)  # type: ignore[arg-type]


def test_sign_refuses_claims_that_do_not_fit_the_token(keyring: Keyring) -> None:
    for bad in (
        claims(programme_id=0),
        claims(programme_id=1 << 32),
        claims(value_cents=0),
        claims(redeem_until=date(2150, 1, 1)),
        claims(redeem_until=date(1969, 12, 31)),
    ):
        with pytest.raises(ValueError):
            keyring.sign(bad)
