"""Benchmark: two-posting entries through ledger.post() from concurrent connections, beside
pgbench running the same INSERTs in plain SQL against the same tables in the same run.

    .venv/bin/python bench/ledger_post.py [--n 20000] [--clients 16] [--jobs CPUs] [--rounds 4]

Runs against DATABASE_URL's server, or the embedded one (./.passnum), in a scratch database it
creates, migrates and drops. Each entry is its own committed transaction on both sides; the
triggers of migration 0002_ledger are present for both. A second baseline runs pgbench's
INSERTs through raw asyncpg from the same client processes (what any Python client gets on this
machine), a third through the app's stack (a SQLAlchemy session and transaction per entry, as
a request has), so the gap to pgbench splits into client language, app stack and ledger.
The sides run in rotating rounds so that all meet the same machine load; each rate is entries
over the summed time of its rounds. The connections are driven by `--jobs`
client threads on pgbench's side (-j) and as many client processes on Python's (the GIL rules
out threads; the app likewise runs several workers). Prints entries/s and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

import asyncpg
from sqlalchemy import text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kit.db import execute_on_server as admin  # noqa: E402
from kit.db import libpq_url, make_engine, make_sessionmaker, resolve_url, with_database  # noqa: E402
from ledger import service as ledger  # noqa: E402
from ledger.sealer import seal_once  # noqa: E402
from migrations import registry  # noqa: E402

SITES = 64
AMOUNT = 1000
HOT = "bench:programme:outstanding"


def site(i: int) -> str:
    return f"bench:site:{i:02d}:payable"


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


def run_pgbench(url: str, n: int, clients: int, jobs: int, hot: int, first_site: int) -> float:
    pgbench = shutil.which("pgbench") or "/usr/bin/pgbench"
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "ledger_post.sql"
        script.write_text(PGBENCH_SCRIPT.format(
            last_site=SITES - 1, hot=hot, first_site=first_site, amount=AMOUNT,
            content_hash="0" * 64))
        out = subprocess.run(
            [pgbench, "-n", "-M", "prepared", "-c", str(clients),
             "-j", str(jobs), "-t", str(n // clients),
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


_SA_ENTRY = text("INSERT INTO ledger_entry (idempotency_key, kind, content_hash) "
                 "VALUES (:key, 'bench', :hash) RETURNING id")
_SA_POSTINGS = text("INSERT INTO ledger_posting (entry_id, account_id, amount_cents) "
                    "VALUES (:entry, :hot, :amount), (:entry, :site, -:amount)")


class PythonSide:
    """The Python clients of one process, kept warm across rounds: ledger.post() through
    pooled sessions, or (second baseline) pgbench's INSERTs through raw asyncpg connections."""

    def __init__(self, url: str, clients: int, hot: int, first_site: int) -> None:
        self.url = url
        self.clients = clients
        self.hot, self.first_site = hot, first_site
        self.engine = make_engine(url, pool_size=clients, max_overflow=0)
        self.sessionmaker = make_sessionmaker(self.engine)

    async def _ledger_worker(self, tag: str, w: int, count: int) -> None:
        for i in range(count):
            async with self.sessionmaker() as s, s.begin():
                await ledger.post(s, key=f"{tag}:{w}:{i}", kind="bench", postings=[
                    (HOT, AMOUNT), (site((w * count + i) % SITES), -AMOUNT)])

    async def _sqlalchemy_worker(self, tag: str, w: int, count: int) -> None:
        for i in range(count):
            async with self.sessionmaker() as s, s.begin():
                entry_id = (await s.execute(_SA_ENTRY, {
                    "key": f"{tag}:{w}:{i}", "hash": "0" * 64})).scalar_one()
                await s.execute(_SA_POSTINGS, {
                    "entry": entry_id, "hot": self.hot, "amount": AMOUNT,
                    "site": self.first_site + (w * count + i) % SITES})

    async def _raw_worker(self, conn: asyncpg.Connection, tag: str, w: int, count: int) -> None:
        entry = await conn.prepare(
            "INSERT INTO ledger_entry (idempotency_key, kind, content_hash) "
            "VALUES ($1, 'bench', $2) RETURNING id")
        postings = await conn.prepare(
            "INSERT INTO ledger_posting (entry_id, account_id, amount_cents) "
            "VALUES ($1, $2, $4), ($1, $3, -$4)")
        for i in range(count):
            async with conn.transaction():
                entry_id = await entry.fetchval(f"{tag}:{w}:{i}", "0" * 64)
                await postings.fetch(entry_id, self.hot,
                                     self.first_site + (w * count + i) % SITES, AMOUNT)

    async def warm_up(self, tag: str) -> None:
        # Opens every connection and fills its statement cache outside the timing.
        await asyncio.gather(*(self._ledger_worker(f"{tag}:warm", w, 20)
                               for w in range(self.clients)))

    async def run(self, mode: str, tag: str, n: int) -> tuple[float, float]:
        """Post n entries; return (start, end) in CLOCK_MONOTONIC, comparable across
        processes. Raw connections are opened before and closed after the timing."""
        per = n // self.clients
        raw: list[asyncpg.Connection] = []
        try:
            if mode == "asyncpg":
                raw = list(await asyncio.gather(*(asyncpg.connect(libpq_url(self.url))
                                                  for _ in range(self.clients))))
            started = time.monotonic()
            if mode == "asyncpg":
                await asyncio.gather(*(self._raw_worker(raw[w], tag, w, per)
                                       for w in range(self.clients)))
            elif mode == "sqlalchemy":
                await asyncio.gather(*(self._sqlalchemy_worker(tag, w, per)
                                       for w in range(self.clients)))
            else:
                await asyncio.gather(*(self._ledger_worker(tag, w, per)
                                       for w in range(self.clients)))
            return started, time.monotonic()
        finally:
            await asyncio.gather(*(c.close() for c in raw))

    async def close(self) -> None:
        await self.engine.dispose()


def _python_process(pipe: Connection, url: str, clients: int, tag: str, loop: str,
                    accounts: tuple[int, int]) -> None:
    """One client process (like one app worker): runs rounds on command, reports its times."""
    loop_factory = None
    if loop == "uvloop":
        import uvloop  # installed with uvicorn[standard]

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        side = PythonSide(url, clients, *accounts)
        runner.run(side.warm_up(tag))
        pipe.send("ready")
        while (command := pipe.recv())[0] == "run":
            _run, mode, round_name, n = command
            pipe.send(runner.run(side.run(mode, f"{tag}:{mode}:{round_name}", n)))
        runner.run(side.close())


class PythonClients:
    """`jobs` client processes sharing `clients` connections, as pgbench's -j threads do."""

    def __init__(self, url: str, clients: int, jobs: int, loop: str,
                 accounts: tuple[int, int]) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipes: list[Connection] = []
        self.processes = []
        share = clients // jobs
        for j in range(jobs):
            parent, child = context.Pipe()
            process = context.Process(target=_python_process,
                                      args=(child, url, share, f"py{j}", loop, accounts),
                                      daemon=True)
            process.start()
            self.pipes.append(parent)
            self.processes.append(process)
        for pipe in self.pipes:
            if pipe.recv() != "ready":
                raise SystemExit("a client process failed to start")

    def run(self, mode: str, round_name: str, n: int) -> float:
        """Post n entries over all processes; return the wall seconds, first start to last end."""
        for pipe in self.pipes:
            pipe.send(("run", mode, round_name, n // len(self.pipes)))
        times = [pipe.recv() for pipe in self.pipes]
        return max(end for _s, end in times) - min(start for start, _e in times)

    def close(self) -> None:
        for pipe in self.pipes:
            pipe.send(("stop",))
        for process in self.processes:
            process.join(timeout=60)


async def seal_all(url: str) -> float:
    """Seal everything; return entries sealed per second."""
    engine = make_engine(url, pool_size=2)
    try:
        started = time.perf_counter()
        sealed = await seal_once(make_sessionmaker(engine))
        return sealed / (time.perf_counter() - started)
    finally:
        await engine.dispose()


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
    parser.add_argument("--jobs", type=int, default=min(16, os.cpu_count() or 1),
                        help="client threads of pgbench (-j) and client processes of the "
                             "Python side, sharing the connections (default: CPUs)")
    parser.add_argument("--rounds", type=int, default=4,
                        help="rotating rounds sharing the n entries of each side")
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
        rounds = max(1, args.rounds)
        jobs = max(1, min(args.jobs, args.clients))
        step = args.clients * jobs
        chunk = max(step, args.n // rounds // step * step)
        n = chunk * rounds
        seconds = {"pgbench": 0.0, "asyncpg": 0.0, "sqlalchemy": 0.0, "ledger": 0.0}
        lines = []
        python = PythonClients(url, args.clients, jobs, args.loop, (hot, first_site))
        try:
            # Rotate which side goes first: all meet the same load and table sizes.
            sides = list(seconds)
            for r in range(rounds):
                for side in sides[r % len(sides):] + sides[:r % len(sides)]:
                    if side == "pgbench":
                        took = chunk / run_pgbench(url, chunk, args.clients, jobs, hot,
                                                   first_site)
                    else:
                        took = python.run(side, f"r{r}", chunk)
                    seconds[side] += took
                    lines.append(f"{side} {chunk / took:.0f}/s")
        finally:
            python.close()
        seal_rate = asyncio.run(seal_all(url))
        entries, unbalanced = asyncio.run(count_entries(url))
        assert unbalanced == 0, f"{unbalanced} unbalanced entries"
        pg_rate, raw_rate, sa_rate, py_rate = (n / seconds[k] for k in seconds)
        where = "DATABASE_URL" if os.environ.get("DATABASE_URL") else "embedded server"
        print(f"ledger.post() benchmark — {n} two-posting entries per side, {args.clients} "
              f"connections driven by {jobs} client thread(s)/process(es) per side, one "
              f"committed transaction per entry, {rounds} rotating rounds ({where}, "
              f"{entries} entries in the end, {os.cpu_count()} CPUs, load average "
              f"{os.getloadavg()[0]:.1f})")
        print("  rounds: " + ", ".join(lines))
        print(f"  pgbench, plain INSERTs (C)        : {pg_rate:7.0f} entries/s   (baseline)")
        print(f"  asyncpg, same INSERTs ({args.loop:7})  : {raw_rate:7.0f} entries/s   "
              f"{100 * raw_rate / pg_rate:4.0f} % of pgbench (Python client floor)")
        print(f"  SQLAlchemy session, same INSERTs  : {sa_rate:7.0f} entries/s   "
              f"{100 * sa_rate / pg_rate:4.0f} % of pgbench (the app's stack, no ledger)")
        print(f"  ledger.post() in a session        : {py_rate:7.0f} entries/s   "
              f"{100 * py_rate / pg_rate:4.0f} % of pgbench, "
              f"{100 * py_rate / sa_rate:.0f} % of the same stack with plain INSERTs")
        print(f"  sealer (seal_once, afterwards)    : {seal_rate:7.0f} entries/s")
    finally:
        if not args.keep:
            asyncio.run(admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
