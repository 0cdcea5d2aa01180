"""Benchmark: two-posting entries through ledger.post() from concurrent connections, beside
pgbench running the same INSERTs in plain SQL against the same tables in the same run.

    .venv/bin/python bench/ledger_post.py [--n 20000] [--clients 16]

Runs against DATABASE_URL's server, or the embedded one (./.passnum), in a scratch database it
creates, migrates and drops. Each entry is its own committed transaction in both runs; the
triggers of migration 0002_ledger are present for both. Prints entries/s and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kit.db import libpq_url, make_engine, make_sessionmaker, resolve_url, with_database  # noqa: E402
from ledger import service as ledger  # noqa: E402
from ledger.sealer import seal_once  # noqa: E402
from migrations import registry  # noqa: E402

SITES = 64
AMOUNT = 1000
HOT = "bench:programme:outstanding"


def site(i: int) -> str:
    return f"bench:site:{i:02d}:payable"


async def admin(server_url: str, sql: str) -> None:
    conn = await asyncpg.connect(libpq_url(with_database(server_url, "postgres")))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def setup_accounts(url: str) -> tuple[int, int]:
    """Create the accounts; return the hot account's id and the first site's id (the site ids
    are consecutive, so pgbench can address them by arithmetic, with no lookup)."""
    conn = await asyncpg.connect(libpq_url(url))
    try:
        hot = await conn.fetchval(
            "INSERT INTO ledger_account (code) VALUES ($1) RETURNING id", HOT)
        ids = [r["id"] for r in await conn.fetch(
            "INSERT INTO ledger_account (code) SELECT c FROM unnest($1::text[]) "
            "WITH ORDINALITY AS x(c, n) ORDER BY n RETURNING id",
            [site(i) for i in range(SITES)])]
        assert ids == list(range(ids[0], ids[0] + SITES)), "site ids are not consecutive"
        await conn.execute("VACUUM ANALYZE")
        return hot, ids[0]
    finally:
        await conn.close()


PGBENCH_SCRIPT = """\
\\set site random(0, {last_site})
\\set r random(1, 9000000000000000000)
BEGIN;
INSERT INTO ledger_entry (idempotency_key, kind, content_hash)
  VALUES ('pgbench:' || :client_id || ':' || :r, 'bench', '{content_hash}')
  RETURNING id AS entry_id \\gset
INSERT INTO ledger_posting (entry_id, account_id, amount_cents)
  VALUES (:entry_id, {hot}, {amount}), (:entry_id, {first_site} + :site, -{amount});
END;
"""


def run_pgbench(url: str, n: int, clients: int, hot: int, first_site: int) -> float:
    pgbench = shutil.which("pgbench") or "/usr/bin/pgbench"
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "ledger_post.sql"
        script.write_text(PGBENCH_SCRIPT.format(
            last_site=SITES - 1, hot=hot, first_site=first_site, amount=AMOUNT,
            content_hash="0" * 64))
        out = subprocess.run(
            [pgbench, "-n", "-M", "prepared", "-c", str(clients),
             "-j", str(min(clients, os.cpu_count() or 1)), "-t", str(n // clients),
             "-f", str(script), libpq_url(url)],
            capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"pgbench failed:\n{out.stdout}\n{out.stderr}")
    failed = re.search(r"number of failed transactions: (\d+)", out.stdout)
    if failed and int(failed.group(1)):
        raise SystemExit(f"pgbench had failed transactions:\n{out.stdout}")
    tps = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out.stdout)
    if not tps:
        raise SystemExit(f"cannot read pgbench's rate:\n{out.stdout}")
    return float(tps.group(1))


async def run_python(url: str, n: int, clients: int, tag: str) -> tuple[float, float]:
    """ledger.post() from `clients` connections; returns (entries/s, sealed entries/s)."""
    engine = make_engine(url, pool_size=clients, max_overflow=0)
    sessionmaker = make_sessionmaker(engine)
    per = n // clients

    async def worker(w: int) -> None:
        for i in range(per):
            async with sessionmaker() as s, s.begin():
                await ledger.post(s, key=f"{tag}:{w}:{i}", kind="bench", postings=[
                    (HOT, AMOUNT), (site((w * per + i) % SITES), -AMOUNT)])

    try:
        # Open every connection (and warm its statement cache) outside the timing.
        await asyncio.gather(*(worker_warmup(sessionmaker, tag, w) for w in range(clients)))
        started = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(clients)))
        rate = per * clients / (time.perf_counter() - started)
        started = time.perf_counter()
        sealed = await seal_once(sessionmaker)
        seal_rate = sealed / (time.perf_counter() - started)
        async with sessionmaker() as s:
            written = (await ledger.balances(s, [HOT]))[HOT]
        assert written % AMOUNT == 0
        return rate, seal_rate
    finally:
        await engine.dispose()


async def worker_warmup(sessionmaker, tag: str, w: int) -> None:  # type: ignore[no-untyped-def]
    for i in range(20):
        async with sessionmaker() as s, s.begin():
            await ledger.post(s, key=f"{tag}:warm:{w}:{i}", kind="bench",
                              postings=[(HOT, AMOUNT), (site(i % SITES), -AMOUNT)])


async def count_entries(url: str) -> tuple[int, int]:
    conn = await asyncpg.connect(libpq_url(url))
    try:
        entries = await conn.fetchval("SELECT count(*) FROM ledger_entry")
        unbalanced = await conn.fetchval(
            "SELECT count(*) FROM (SELECT entry_id FROM ledger_posting GROUP BY entry_id "
            "HAVING sum(amount_cents) <> 0 OR count(*) < 2) x")
        return entries, unbalanced
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="entries per run (default 20000)")
    parser.add_argument("--clients", type=int, default=16, help="connections (default 16)")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop",
                        help="event loop of the Python side (uvicorn uses uvloop when present)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args()

    server_url = resolve_url(os.environ.get("DATABASE_URL"), ROOT / ".passnum")
    name = f"passnum_bench_ledger_{os.getpid()}"
    asyncio.run(admin(server_url, f'CREATE DATABASE "{name}"'))
    url = with_database(server_url, name)
    try:
        registry.upgrade(url)
        hot, first_site = asyncio.run(setup_accounts(url))
        n = args.n - args.n % args.clients
        # pgbench first, then Python: each meets the same tables, only slightly larger.
        pg_rate = run_pgbench(url, n, args.clients, hot, first_site)
        loop_factory = None
        if args.loop == "uvloop":
            import uvloop  # installed with uvicorn[standard]

            loop_factory = uvloop.new_event_loop
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            py_rate, seal_rate = runner.run(run_python(url, n, args.clients, "py"))
        entries, unbalanced = asyncio.run(count_entries(url))
        assert unbalanced == 0, f"{unbalanced} unbalanced entries"
        where = os.environ.get("DATABASE_URL") and "DATABASE_URL" or "embedded server"
        print(f"ledger.post() benchmark — {n} two-posting entries, {args.clients} connections, "
              f"one committed transaction per entry ({where}, {entries} entries in the end)")
        print(f"  pgbench, same INSERTs in SQL : {pg_rate:9.0f} entries/s   (baseline)")
        print(f"  ledger.post() ({args.loop:7})      : {py_rate:9.0f} entries/s")
        print(f"  ratio                        : {100 * py_rate / pg_rate:9.0f} % of pgbench")
        print(f"  sealer (seal_once, after)    : {seal_rate:9.0f} entries/s")
    finally:
        if not args.keep:
            asyncio.run(admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
