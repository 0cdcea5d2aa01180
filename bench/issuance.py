"""Benchmark: a printer's bulk order end to end — 1,000 booklets of 10 cheques, signed, written
to PostgreSQL and laid out as one print-ready PDF — against the naive way of printing cheques.

    .venv/bin/python bench/issuance.py [--booklets 1000] [--size 10] [--baseline-cheques 300]

Ours: `pass_.issuance.order_booklets` (Ed25519 `sign_many`, booklets and cheques written by one
multi-row INSERT … SELECT unnest(…) per chunk of 4,000 rows), committed, then
`pass_.booklet_print.order_pdf` (reads the order back, QR symbols computed on 2 processes, one PDF).
Baseline, measured in the same run on the same tokens: `qrcode` with its default settings
(`make(fit=True)`: version search, all 8 masks evaluated) and one PNG per cheque, on a sample,
extrapolated to a rate — and that before any signing, database write or page layout.

Runs against the embedded PostgreSQL (or DATABASE_URL's server) in a scratch database that it
creates, migrates and drops.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import qrcode  # noqa: E402
from sqlalchemy import text  # noqa: E402

from kit.clock import paris_today, utcnow  # noqa: E402
from kit.db import execute_on_server as admin  # noqa: E402
from kit.db import (  # noqa: E402
    make_engine,
    make_sessionmaker,
    resolve_url,
    transaction,
    with_database,
)
from migrations import registry  # noqa: E402
from pass_ import accounts, booklet_print, issuance, programmes  # noqa: E402
from pass_.enums import FinancerRole, OrganisationKind, Qualification, Role  # noqa: E402
from pass_.programmes import Actor  # noqa: E402
from pass_.schemas import FinancerIn, IssuerIn, OrganisationCreate, ProgrammeCreate  # noqa: E402
from pass_.tokens import Keyring  # noqa: E402
from pass_.validation import luhn_ok  # noqa: E402


def siret(prefix13: str) -> str:
    return next(prefix13 + d for d in "0123456789" if luhn_ok(prefix13 + d))


async def setup(sessionmaker, booklets: int, size: int) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """A programme large enough for the order, its issuer and a few qualified sites."""
    async with transaction(sessionmaker) as session:

        async def org(kind: OrganisationKind, n: int, **extra: object) -> int:
            created = await accounts.create_organisation(
                session,
                OrganisationCreate(
                    kind=kind,
                    name=f"{kind.value} {n}",
                    siret=siret(f"{n:013d}"),
                    commune_insee="35238",
                    **extra,  # type: ignore[arg-type]
                ),
            )
            return created.id  # type: ignore[return-value]

        state = await org(OrganisationKind.financer, 1)
        local = await org(OrganisationKind.financer, 2)
        issuer = await org(OrganisationKind.issuer, 3)
        for n in range(12):
            site = await org(
                OrganisationKind.site,
                100 + n,
                iban="FR7630006000011234567890189",
                address=f"{n + 1} rue de la République, AdmiVille",
            )
            await accounts.set_qualification(
                session, site_id=site, to=Qualification.qualified, now=utcnow()
            )
        year = paris_today().year
        cents = booklets * size * 1000
        programme = await programmes.create_programme(
            session,
            ProgrammeCreate(
                name="Pass numérique — banc d'essai",
                territory=["35"],
                valid_from=date(year, 1, 1),
                valid_until=date(year, 12, 31),
                redeem_until=date(year + 1, 1, 31),
                state_share_bp=5000,
                financers=[
                    FinancerIn(
                        organisation_id=state, role=FinancerRole.state, commitment_cents=cents
                    ),
                    FinancerIn(
                        organisation_id=local, role=FinancerRole.local, commitment_cents=cents
                    ),
                ],
                issuers=[IssuerIn(organisation_id=issuer, quota_cheques=booklets * size)],
            ),
            today=paris_today(),
        )
        return programme.id, issuer  # type: ignore[return-value]


def baseline(tokens: list[str]) -> float:
    """Cheques/s of the naive printing: qrcode's defaults, one PNG per cheque."""
    start = time.perf_counter()
    for token in tokens:
        code = qrcode.QRCode()
        code.add_data(token)
        code.make(fit=True)
        buffer = io.BytesIO()
        code.make_image().save(buffer)
    return len(tokens) / (time.perf_counter() - start)


async def run(args: argparse.Namespace, url: str, keys_dir: Path) -> None:
    engine = make_engine(url, pool_size=2, max_overflow=0)
    sessionmaker = make_sessionmaker(engine)
    keyring = Keyring.load_or_create(keys_dir)
    actor = Actor(user_id=None, organisation_id=0, role=Role.operator_admin)
    cheques = args.booklets * args.size
    try:
        programme_id, issuer_id = await setup(sessionmaker, args.booklets + 5, args.size)
        # Warm-up: connections, statement preparation, fonts, the QR look-up tables.
        async with transaction(sessionmaker) as session:
            warm = await issuance.order_booklets(
                session, keyring=keyring, actor=actor, programme_id=programme_id,
                issuer_id=issuer_id, booklets=5, size=args.size, now=utcnow(),
            )  # fmt: skip
        async with sessionmaker() as session:
            await booklet_print.order_pdf(
                session, actor=actor, order_id=warm.id, workers=args.workers
            )

        start = time.perf_counter()
        async with transaction(sessionmaker) as session:
            order = await issuance.order_booklets(
                session, keyring=keyring, actor=actor, programme_id=programme_id,
                issuer_id=issuer_id, booklets=args.booklets, size=args.size, now=utcnow(),
            )  # fmt: skip
        stored = time.perf_counter()
        async with sessionmaker() as session:
            pdf = await booklet_print.order_pdf(
                session, actor=actor, order_id=order.id, workers=args.workers
            )
        done = time.perf_counter()

        async with sessionmaker() as session:
            rows = await session.scalar(
                text("SELECT count(*) FROM cheque c JOIN booklet b ON b.id = c.booklet_id "
                     "WHERE b.order_id = :o AND c.status = 'in_stock'"),
                {"o": order.id},
            )  # fmt: skip
            sample = list(
                (
                    await session.scalars(
                        text("SELECT token FROM cheque ORDER BY id DESC LIMIT :n"),
                        {"n": args.baseline_cheques},
                    )
                ).all()
            )
        assert rows == cheques, (rows, cheques)
        assert pdf.startswith(b"%PDF")

        base_rate = baseline(sample)
        total = done - start
        rate = cheques / total
        print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f}")
        print(
            f"baseline  qrcode make(fit=True), one PNG each   {base_rate:8.0f} cheques/s"
            f"   ({len(sample)} cheques; {cheques / base_rate:5.1f} s for {cheques:,})"
        )
        print(
            f"ours      order: sign + DB + print PDF          {rate:8.0f} cheques/s"
            f"   ({cheques:,} cheques in {total:.2f} s, ×{rate / base_rate:.1f} the baseline)"
        )
        print(
            f"  parts: sign + bulk insert + commit {stored - start:5.2f} s "
            f"({cheques / (stored - start):,.0f}/s), read back + PDF {done - stored:5.2f} s "
            f"({cheques / (done - stored):,.0f}/s); PDF {len(pdf) / 1e6:.1f} MB, "
            f"{args.booklets} booklets"
        )
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--booklets", type=int, default=1000)
    parser.add_argument("--size", type=int, default=10)
    parser.add_argument("--baseline-cheques", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    server = resolve_url(os.environ.get("DATABASE_URL"), Path(".passnum"))
    name = f"passnum_bench_issuance_{os.getpid()}"
    asyncio.run(admin(server, f'CREATE DATABASE "{name}"'))
    try:
        url = with_database(server, name)
        registry.upgrade(url)  # no event loop runs here: no thread needed
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(run(args, url, Path(tmp) / "keys"))
    finally:
        asyncio.run(admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
