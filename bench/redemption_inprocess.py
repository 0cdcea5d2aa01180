"""In-process cost of one online redemption: CPU a request (client + app) and PostgreSQL CPU.

    DATABASE_URL=postgresql://… .venv/bin/python bench/redemption_inprocess.py
        [--requests 300] [--rounds 4] [--profile FILE]

Creates a scratch database (migrated, the setup of bench/redemption.py), runs the real app in
this process behind httpx's ASGI transport, logs a mediator in, then redeems QR codes one after
the other (`POST /api/v1/redemptions`, a fresh Idempotency-Key each): `--rounds` rounds of
`--requests`, each printing the wall time, this process's CPU (httpx client + app) and the CPU
of this database's PostgreSQL backends (read in /proc: run it on the database's machine) a
request. With `--profile FILE`, one more round runs under cProfile (CPU timer) and its stats are
written to FILE (`python -m pstats FILE`). No network, no wrk: the per-request cost, without
the queueing of the HTTP benchmark. The database server must be local (for /proc).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import logging
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import asyncpg  # noqa: E402
import httpx  # noqa: E402
import redemption as bench  # noqa: E402  (bench/redemption.py: its setup)

from kit.db import execute_on_server, libpq_url, make_engine, with_database  # noqa: E402
from kit.settings import Settings  # noqa: E402
from migrations import registry  # noqa: E402
from pass_.tokens import Keyring  # noqa: E402


async def backends_cpu(monitor: asyncpg.Connection) -> float:
    pids = await monitor.fetch("SELECT pid FROM pg_stat_activity WHERE datname = "
                               "current_database() AND pid <> pg_backend_pid()")
    return bench.cpu_seconds([row[0] for row in pids])


async def main(args: argparse.Namespace) -> None:
    server = os.environ["DATABASE_URL"]
    name = f"passnum_bench_inprocess_{uuid.uuid4().hex[:6]}"
    await execute_on_server(server, f'CREATE DATABASE "{name}"')
    url = with_database(server, name)
    for key in ("PER_USER_PER_MINUTE", "PER_IP_PER_MINUTE", "BURST"):
        os.environ[f"PASSNUM_RATE_LIMIT_{key}"] = "100000000"
    logging.disable(logging.INFO)  # the access log line stays built, not printed
    try:
        await asyncio.to_thread(registry.upgrade_in_thread, url)
        with tempfile.TemporaryDirectory() as tmp:
            keyring = Keyring.load_or_create(Path(tmp) / "keys")
            total = 50 + args.requests * (args.rounds + (1 if args.profile else 0))
            world = await bench.setup(url, keyring, {"online": total})
            codes = iter(token for _, token in world["cheques"]["online"])
            from api.app import create_app

            engine = make_engine(url)
            app = create_app(Settings(database_url=url, data_dir=Path(tmp)), engine=engine,
                             run_sealer=False)
            monitor = await asyncpg.connect(libpq_url(url))
            async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://bench"
            ) as http:
                login = await http.post("/api/v1/auth/token", data={
                    "username": world["mediators"][0], "password": bench.PASSWORD})
                auth = {"authorization": f"Bearer {login.json()['access_token']}"}

                async def redeem() -> None:
                    r = await http.post("/api/v1/redemptions", json={
                        "code": next(codes), "service": "realiser_demarche",
                        "demarche_family": "caf"}, headers={**auth, "Idempotency-Key":
                                                            uuid.uuid4().hex})
                    if r.status_code != 201:
                        raise RuntimeError(f"{r.status_code} {r.text}")

                for _ in range(50):  # warm-up: plans, statement caches, pool
                    await redeem()
                print(f"load average {os.getloadavg()[0]:.1f}; {args.requests} sequential "
                      f"redemptions a round")
                for _ in range(args.rounds):
                    pg = await backends_cpu(monitor)
                    wall, cpu = time.perf_counter(), time.process_time()
                    for _ in range(args.requests):
                        await redeem()
                    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                    pg = await backends_cpu(monitor) - pg
                    n = args.requests
                    print(f"  {wall / n * 1000:.2f} ms wall, client + app CPU "
                          f"{cpu / n * 1000:.2f} ms, PostgreSQL CPU {pg / n * 1000:.2f} ms "
                          f"a redemption")
                if args.profile:
                    profiler = cProfile.Profile(time.process_time)
                    profiler.enable()
                    for _ in range(args.requests):
                        await redeem()
                    profiler.disable()
                    profiler.dump_stats(args.profile)
                    print(f"profile: {args.profile} (python -m pstats)")
            await monitor.close()
            await engine.dispose()
    finally:
        await execute_on_server(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--profile", default=None)
    asyncio.run(main(parser.parse_args()))
