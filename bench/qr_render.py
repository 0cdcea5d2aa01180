"""Benchmark: signing cheques and printing them, naive JWT + PNG QR codes vs our tokens + PDF.

    .venv/bin/python bench/qr_render.py [--cheques 2000] [--baseline-cheques 200] [--workers 2]

Baseline (what one would write first): an EdDSA JWT per cheque (pyjwt, 234 characters) and
`qrcode` with its default settings (`make(fit=True)`: version search, the 8 masks evaluated),
one PNG per cheque. Ours: `Keyring.sign_many` (140-character token), then one print-ready A4 PDF
of booklets of 10 (cover page + cheque tiles, QR as vector paths), sequentially and with the QR
symbols computed in worker processes. Both run here, in the same process, on the same machine.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jwt  # noqa: E402
import qrcode  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from pass_ import qr  # noqa: E402
from pass_.codes import new_serial  # noqa: E402
from pass_.pdf import (  # noqa: E402
    BookletPrint,
    ChequePrint,
    SitePrint,
    qr_path,
    render_booklets,
    render_booklets_parallel,
)
from pass_.tokens import ChequeClaims, Keyring  # noqa: E402

VALID_FROM, VALID_UNTIL, REDEEM_UNTIL = date(2025, 1, 1), date(2025, 12, 31), date(2026, 1, 31)
SITES = [
    SitePrint(f"Médiathèque n° {i}", "AdmiVille", f"{i} rue de la République") for i in range(12)
]


def qr_version(modules: int) -> int:
    return (modules - 17) // 4


def baseline(count: int) -> tuple[float, int, int]:
    """(cheques/s, JWT length, QR version) for JWT + default qrcode PNG per cheque."""
    key = Ed25519PrivateKey.generate()
    start = time.perf_counter()
    length = version = 0
    for i in range(count):
        token = jwt.encode(
            {"sub": new_serial(), "prg": 12, "val": 1000, "exp": 1769900399 + i},
            key,
            algorithm="EdDSA",
            headers={"kid": "2025-01"},
        )
        code = qrcode.QRCode()
        code.add_data(token)
        code.make(fit=True)
        buffer = io.BytesIO()
        code.make_image().save(buffer)
        length, version = len(token), code.version
    return count / (time.perf_counter() - start), length, version


def booklets(keyring: Keyring, count: int) -> list[BookletPrint]:
    result = []
    serials = [new_serial() for _ in range(count)]
    tokens = keyring.sign_many(ChequeClaims(serial, 12, 1000, REDEEM_UNTIL) for serial in serials)
    for first in range(0, count, 10):
        cheques = [
            ChequePrint(serial, token, 1000, VALID_FROM, VALID_UNTIL, REDEEM_UNTIL)
            for serial, token in zip(
                serials[first : first + 10], tokens[first : first + 10], strict=True
            )
        ]
        result.append(
            BookletPrint(
                f"2025-{first // 10:06d}",
                "Pass numérique AdmiVille 2025",
                "CCAS d'AdmiVille",
                "AdmiVille",
                cheques,
                SITES,
            )
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cheques", type=int, default=2000)
    parser.add_argument("--baseline-cheques", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        keyring = Keyring.load_or_create(Path(tmp) / "keys")
        render_booklets(booklets(keyring, 20))  # warm up: fonts, look-up tables

        base_rate, jwt_length, jwt_version = baseline(args.baseline_cheques)
        print(
            f"baseline  JWT + qrcode PNG each   {base_rate:9.0f} cheques/s"
            f"   (token {jwt_length} chars, QR version {jwt_version}, "
            f"{args.baseline_cheques} cheques)"
        )

        claims = [ChequeClaims(new_serial(), 12, 1000, REDEEM_UNTIL) for _ in range(args.cheques)]
        start = time.perf_counter()
        tokens = keyring.sign_many(claims)
        sign_rate = args.cheques / (time.perf_counter() - start)
        start = time.perf_counter()
        for token in tokens:
            qr_path(token)
        path_rate = args.cheques / (time.perf_counter() - start)
        print(f"  parts: sign {sign_rate:9.0f}/s   QR symbol + PDF path {path_rate:9.0f}/s")

        results = {}
        for label, render in (
            ("sequential", render_booklets),
            (f"{args.workers} workers", lambda b: render_booklets_parallel(b, args.workers)),
        ):
            start = time.perf_counter()
            pdf = render(booklets(keyring, args.cheques))
            rate = args.cheques / (time.perf_counter() - start)
            results[label] = rate
            print(
                f"ours      sign + PDF, {label:<11} {rate:9.0f} cheques/s"
                f"   ×{rate / base_rate:.0f} the baseline   ({len(pdf) / 1e6:.1f} MB, "
                f"{len(pdf) / args.cheques / 1e3:.2f} kB a cheque)"
            )
        token = tokens[0]
        print(
            f"token: {len(token)} chars, QR version {qr_version(len(qr.rows(token)))}-{qr.ERROR} "
            f"({qr.SIZE}×{qr.SIZE} modules, alphanumeric mode); "
            f"JWT: {jwt_length} chars, QR version {jwt_version}-M (byte mode)"
        )


if __name__ == "__main__":
    main()
