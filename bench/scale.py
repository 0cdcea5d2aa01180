"""Benchmark: every page and endpoint a person waits for, on a national-size database.

    # build once (kept: the name is given), at this code's schema (`--schema 0007_ledger_seal`
    # builds at that revision, with the old code on PYTHONPATH, so that old code can read it)
    PYTHONPATH=$PWD .venv/bin/python bench/scale.py --db scale_1m --cheques 1000000 --build
    # time with the code on PYTHONPATH (old code: "before"), then with this tree ("after")
    PYTHONPATH=/tmp/old18 .venv/bin/python bench/scale.py --db scale_1m --label before
    PYTHONPATH=$PWD .venv/bin/python bench/scale.py --db scale_1m --label after --upgrade
    # print the table of every run recorded (two sizes, before/after, growth)
    .venv/bin/python bench/scale.py --table
    .venv/bin/python bench/scale.py --db scale_1m --drop

The database is built by set-based SQL in a few statements, in the shape of a national scheme:
3,000 sites, 100 financers, 500 issuers, 300 programmes of which one holds 30 % of the
cheques; booklets of 10 cheques, 60 % handed out to a beneficiary (need level 1–3), 40 % of all
cheques redeemed over ~300 days at random sites with a démarche family (or none); every
activation and redemption has its ledger entry (content fingerprints computed in SQL, exactly as
`ledger.canonical` does), all sealed by the project's sealer; then three clearing batches are
closed by `clearing.batches.close_batch`. `passnum audit` finds it conforming.

Each run times (median of `--repeat` requests, one process, the real app over ASGI, logged in by
a session cookie or bearer token): the financer's dashboard (big and small programme), the
operator's home, programme list and page, the redemption listings (first page and a deep page
by cursor, for a site and for the operator), statement lists, the issuer's home, the site's
day, closing a batch (the rest of the redemptions, rolled back), expiry (rolled back), and the
full audit (a subprocess: wall time and peak memory). With `--day N`, N redemptions of a new day
are then added, sealed, and the incremental audit timed. Results are appended to
bench/scale_results.jsonl with the load average; `--table` prints them.

The code measured is whatever `import api` finds first: keep PYTHONPATH explicit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
# bench/ itself must not shadow the packages (bench/clearing.py would hide `clearing`).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.append(str(ROOT))  # after PYTHONPATH: the code measured is the one named there

from kit.db import execute_on_server as admin  # noqa: E402
from kit.db import libpq_url, make_engine, make_sessionmaker, resolve_url, with_database  # noqa: E402

RESULTS = ROOT / "bench" / "scale_results.jsonl"
SITES, FINANCERS, ISSUERS, PROGRAMMES = 3_000, 100, 500, 300
NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)  # the bench's "today": after every redemption
FAMILIES = ["caf", "assurance_maladie", "assurance_retraite", "msa", "france_travail", "impots",
            "ants", "justice", "la_poste", "logement", "energie", "autre"]
SERVICES = ["creer_courriel", "naviguer_web", "acceder_services_en_ligne",
            "connaitre_ses_droits", "realiser_demarche", "ecrire_document"]
# Batches closed at build time (cutoffs, Paris days are irrelevant here: instants in UTC); the
# timed close takes everything up to TIMED_CUTOFF, the rest stays unbatched.
CUTOFFS = [datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 5, 1, tzinfo=UTC),
           datetime(2026, 7, 1, tzinfo=UTC)]
TIMED_CUTOFF = datetime(2026, 11, 1, tzinfo=UTC)


def _arr(values: list[str]) -> str:
    return "ARRAY[" + ", ".join(f"'{v}'" for v in values) + "]"


# Ids are given explicitly (fresh database): operator 1, sites 2..3001, financers
# 3002..3101 (3002 = the State), issuers 3102..3601.
ORGS = f"""
INSERT INTO organisation (id, kind, name, siret, commune_insee, iban, bic, qualification)
SELECT 1, 'operator', 'Opérateur', '00000000000001', '35238', NULL, NULL, NULL
UNION ALL
SELECT 1 + i, 'site', 'Lieu ' || i, lpad((100000 + i)::text, 14, '0'),
       lpad(((i % 1800) + 1001)::text, 5, '0'), 'FR7630006000011234567890189', 'AGRIFRPP882',
       'qualified'
FROM generate_series(1, {SITES}) i
UNION ALL
SELECT 3001 + i, 'financer', 'Financeur ' || i, lpad((200000 + i)::text, 14, '0'), '35238',
       NULL, NULL, NULL
FROM generate_series(1, {FINANCERS}) i
UNION ALL
SELECT 3101 + i, 'issuer', 'CCAS ' || i, lpad((300000 + i)::text, 14, '0'),
       lpad(((i % 1800) + 1001)::text, 5, '0'), NULL, NULL, NULL
FROM generate_series(1, {ISSUERS}) i;
SELECT setval(pg_get_serial_sequence('organisation', 'id'), 4000);

INSERT INTO app_user (id, email, password_hash, organisation_id, role)
VALUES (1, 'operateur@bench', 'x', 1, 'operator_admin'),
       (2, 'financeur@bench', 'x', 3002, 'financer'),
       (3, 'mediateur@bench', 'x', 2, 'site_mediator'),
       (4, 'agent@bench', 'x', 3102, 'issuer_agent');
SELECT setval(pg_get_serial_sequence('app_user', 'id'), 100);

INSERT INTO programme (id, name, territory, face_value_cents, booklet_sizes, valid_from,
                       valid_until, redeem_until, state_share_bp, financer_fee_bp,
                       site_commission_bp, issuing_capacity_cents, created_at)
SELECT i, 'Programme ' || i, ARRAY['01', '02'], 1000, ARRAY[5, 10], DATE '2026-01-01',
       DATE '2026-12-31', DATE '2027-01-31', CASE WHEN i % 4 = 0 THEN 4000 ELSE 5000 END,
       50 * (i % 3), 100 * (i % 2), 10000000000000, TIMESTAMPTZ '2025-12-01'
FROM generate_series(1, {PROGRAMMES}) i;
SELECT setval(pg_get_serial_sequence('programme', 'id'), {PROGRAMMES});

INSERT INTO programme_financer (programme_id, organisation_id, position, role,
                                commitment_cents, weight, demarche_families)
SELECT p, f, pos, role, 1000000000000, w, fam
FROM generate_series(1, {PROGRAMMES}) p
CROSS JOIN LATERAL (VALUES
    (3002, 0, 'state', 1, ARRAY[]::varchar[]),
    (3003 + (p % 60), 1, 'local', 2, ARRAY[]::varchar[]),
    (3003 + ((p + 7) % 60), 2, 'local', 1, ARRAY[]::varchar[]),
    (3063 + (p % 38), 3, 'operator', 1, ARRAY['caf', 'impots']::varchar[])
) AS x(f, pos, role, w, fam);

INSERT INTO programme_issuer (programme_id, organisation_id, quota_cheques)
SELECT p, 3102 + ((p * 5 + j) % {ISSUERS}), 2000000000
FROM generate_series(1, {PROGRAMMES}) p, generate_series(0, 4) j;
"""

HASH = """
CREATE FUNCTION pg_temp.h(i bigint, salt int) RETURNS bigint LANGUAGE sql IMMUTABLE AS
$$ SELECT abs(hashtextextended(i::text, salt)) $$;
"""

# Booklet b: programme 1 for 30 % of booklets, else one of the 299 others; handed out for 60 %.
BOOKLETS = """
CREATE TEMP TABLE bk AS
SELECT b AS id,
       CASE WHEN pg_temp.h(b, 1) % 100 < 30 THEN 1 ELSE 2 + pg_temp.h(b, 2) % 299 END AS programme,
       pg_temp.h(b, 3) % 5 AS j,
       pg_temp.h(b, 4) % 100 < 60 AS out,
       TIMESTAMPTZ '2026-01-05 08:00+00' + (pg_temp.h(b, 6) % 200) * interval '1 day'
         + (pg_temp.h(b, 7) % 36000) * interval '1 second' AS at
FROM generate_series(1, $1::bigint) b;

INSERT INTO beneficiary (id, issuer_id, need_level, created_at)
SELECT id, 3102 + ((programme * 5 + j) % 500), 1 + pg_temp.h(id, 5) % 3, at
FROM bk WHERE out;
SELECT setval(pg_get_serial_sequence('beneficiary', 'id'), $1::bigint + 1);

INSERT INTO booklet (id, number, programme_id, issuer_id, beneficiary_id, size, status,
                     created_by, created_at, handed_out_by, handed_out_at)
SELECT id, 'B' || id, programme, 3102 + ((programme * 5 + j) % 500),
       CASE WHEN out THEN id END, 10, CASE WHEN out THEN 'active' ELSE 'in_stock' END,
       4, TIMESTAMPTZ '2026-01-02', CASE WHEN out THEN 4 END, CASE WHEN out THEN at END
FROM bk;
SELECT setval(pg_get_serial_sequence('booklet', 'id'), $1::bigint + 1);
"""

CHEQUES = """
INSERT INTO cheque (id, serial, token, booklet_id, programme_id, position, value_cents, status,
                    valid_from, valid_until, redeem_until, activated_at, status_changed_at)
SELECT c, 'PN-' || lpad(upper(to_hex(c)), 12, '0'), 'PN1:bench:' || c, bk.id, bk.programme, pos,
       1000,
       CASE WHEN NOT bk.out THEN 'in_stock' WHEN pg_temp.h(c, 8) % 3 < 2 THEN 'redeemed'
            ELSE 'active' END,
       DATE '2026-01-01', DATE '2026-12-31', DATE '2027-01-31',
       CASE WHEN bk.out THEN bk.at END, CASE WHEN bk.out THEN bk.at END
FROM bk, generate_series(1, 10) pos, LATERAL (SELECT (bk.id - 1) * 10 + pos AS c) x
WHERE bk.id BETWEEN $1 AND $2;
"""

REDEMPTIONS = f"""
INSERT INTO redemption (cheque_id, programme_id, site_id, user_id, value_cents, service,
                        demarche_family, redeemed_at)
SELECT id, programme_id, site, 3, value_cents, service, family, at FROM (
  SELECT c.id, c.programme_id, c.value_cents,
         2 + pg_temp.h(c.id, 9) % {SITES} AS site,
         ({_arr(SERVICES)})[1 + pg_temp.h(c.id, 10) % 6] AS service,
         ({_arr(FAMILIES)})[1 + pg_temp.h(c.id, 11) % 14] AS family,
         c.activated_at + (pg_temp.h(c.id, 12) % 100) * interval '1 day'
           + (pg_temp.h(c.id, 13) % 30000) * interval '1 second' AS at
  FROM cheque c WHERE c.status = 'redeemed') x
ORDER BY at, id;
UPDATE cheque c SET status_changed_at = r.redeemed_at FROM redemption r WHERE r.cheque_id = c.id;
"""

COUNTERS = """
UPDATE programme p SET issued_value_cents = x.v
FROM (SELECT programme_id, sum(value_cents) v FROM cheque WHERE activated_at IS NOT NULL
      GROUP BY programme_id) x WHERE x.programme_id = p.id;
UPDATE programme_issuer i SET issued_cheques = x.n
FROM (SELECT k.programme_id, k.issuer_id, count(*) n FROM cheque c
      JOIN booklet k ON k.id = c.booklet_id WHERE c.activated_at IS NOT NULL
      GROUP BY 1, 2) x
WHERE x.programme_id = i.programme_id AND x.issuer_id = i.organisation_id;
"""

# Entries as ledger.service writes them: content_hash = sha256 of ledger.canonical's text
# (sorted keys, no spaces; postings sorted by code, and each first code sorts first here).
LEDGER = """
INSERT INTO ledger_account (code)
SELECT 'programme:' || p || x FROM generate_series(1, 300) p, (VALUES (':available'),
       (':outstanding')) v(x)
UNION ALL SELECT 'site:' || s || ':payable' FROM generate_series(2, 3001) s;

CREATE TEMP TABLE ent AS
SELECT row_number() OVER (ORDER BY at, key) AS id, x.* FROM (
  SELECT 'activate:' || k.id AS key, 'activation' AS kind,
         format('{"booklet_id":%s,"cheques":%s,"programme_id":%s}', k.id, k.size,
                k.programme_id) AS memo,
         k.handed_out_at AS at,
         'programme:' || k.programme_id || ':available' AS c1, -(k.size * 1000) AS a1,
         'programme:' || k.programme_id || ':outstanding' AS c2, k.size * 1000 AS a2
  FROM booklet k WHERE k.status = 'active'
  UNION ALL
  SELECT 'redeem:' || r.id, 'redemption', format('{"serial":"%s"}', c.serial), r.redeemed_at,
         'programme:' || r.programme_id || ':outstanding', -r.value_cents,
         'site:' || r.site_id || ':payable', r.value_cents
  FROM redemption r JOIN cheque c ON c.id = r.cheque_id) x;

INSERT INTO ledger_entry (id, idempotency_key, kind, memo, created_at, content_hash)
SELECT id, key, kind, CAST(memo AS jsonb), at,
       encode(sha256(convert_to(format('{"kind":"%s","memo":%s,"postings":[["%s",%s],["%s",%s]]}',
                                       kind, memo, c1, a1, c2, a2), 'UTF8')), 'hex')
FROM ent ORDER BY id;
SELECT setval(pg_get_serial_sequence('ledger_entry', 'id'), (SELECT max(id) FROM ent));

INSERT INTO ledger_posting (entry_id, account_id, amount_cents)
SELECT e.id, a.id, x.amount
FROM ent e CROSS JOIN LATERAL (VALUES (e.c1, e.a1), (e.c2, e.a2)) x(code, amount)
JOIN ledger_account a ON a.code = x.code
ORDER BY e.id;
DROP TABLE ent;
"""


def log(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


async def build(url: str, cheques: int) -> None:
    conn = await asyncpg.connect(libpq_url(url))
    booklets = cheques // 10
    try:
        # Bulk load: the ledger's deferred balance triggers and foreign keys are skipped (the
        # audit checks the balance of every entry afterwards).
        await conn.execute("SET session_replication_role = replica")
        await conn.execute("SET maintenance_work_mem = '512MB'; SET work_mem = '256MB'")
        await conn.execute(HASH)
        t = time.perf_counter()
        await conn.execute(ORGS)
        await conn.execute(BOOKLETS.replace("$1::bigint", str(booklets)))
        log(f"organisations, programmes, {booklets:,} booklets ({time.perf_counter() - t:.0f} s)")
        step = 200_000
        for first in range(1, booklets + 1, step):
            await conn.execute(CHEQUES, first, min(booklets, first + step - 1))
        await conn.execute("SELECT setval(pg_get_serial_sequence('cheque', 'id'), $1)",
                           cheques + 1)
        log(f"{cheques:,} cheques ({time.perf_counter() - t:.0f} s)")
        await conn.execute(REDEMPTIONS)
        await conn.execute(COUNTERS)
        log(f"redemptions ({time.perf_counter() - t:.0f} s)")
        await conn.execute(LEDGER)
        log(f"ledger entries ({time.perf_counter() - t:.0f} s)")
        await conn.execute("VACUUM ANALYZE")
        log(f"vacuum analyze ({time.perf_counter() - t:.0f} s)")
    finally:
        await conn.close()
    from ledger.sealer import seal_once

    engine = make_engine(url, pool_size=2, max_overflow=0)
    try:
        sessionmaker = make_sessionmaker(engine)
        t = time.perf_counter()
        sealed = await seal_once(sessionmaker, limit=50_000)
        log(f"sealed {sealed:,} entries ({time.perf_counter() - t:.0f} s)")
        from clearing.batches import close_batch

        for cutoff in CUTOFFS:
            t = time.perf_counter()
            async with sessionmaker() as session, session.begin():
                batch, _ = await close_batch(session, cutoff=cutoff, now=NOW)
            log(f"batch {batch.id}: {batch.redemption_count:,} redemptions "
                f"({time.perf_counter() - t:.0f} s)")
        await seal_once(sessionmaker, limit=50_000)
    finally:
        await engine.dispose()
    conn = await asyncpg.connect(libpq_url(url))
    try:
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


# ------------------------------------------------------------------------------ timing


def token(secret: str, user_id: int, org: int, role: str, email: str) -> str:
    from api.security import Principal, create_access_token
    from pass_.enums import Role

    value, _ = create_access_token(Principal(user_id=user_id, organisation_id=org,
                                             role=Role(role), email=email),
                                   secret=secret, now=datetime.now(UTC), minutes=120)
    return value


async def fixtures(url: str) -> dict[str, Any]:
    """What the timed requests point at: a small programme, cursors deep in the listings."""
    conn = await asyncpg.connect(libpq_url(url))
    try:
        small = await conn.fetchval(
            "SELECT programme_id FROM cheque WHERE programme_id > 1 GROUP BY programme_id "
            "ORDER BY count(*), programme_id LIMIT 1")
        small_n = await conn.fetchval("SELECT count(*) FROM cheque WHERE programme_id = $1",
                                      small)
        total = await conn.fetchval("SELECT count(*) FROM redemption")
        deep_all = await conn.fetchrow(
            "SELECT redeemed_at, id FROM redemption ORDER BY redeemed_at DESC, id DESC "
            "OFFSET $1 LIMIT 1", min(100_000, total // 2))
        deep_site = await conn.fetchrow(
            "SELECT redeemed_at, id FROM redemption WHERE site_id = 2 "
            "ORDER BY redeemed_at DESC, id DESC OFFSET $1 LIMIT 1",
            await conn.fetchval("SELECT count(*) / 2 FROM redemption WHERE site_id = 2"))
        cheques = await conn.fetchval("SELECT count(*) FROM cheque")
        redemptions_pending = await conn.fetchval(
            "SELECT count(*) FROM redemption WHERE batch_id IS NULL AND reversed_at IS NULL "
            "AND redeemed_at < $1", TIMED_CUTOFF)
    finally:
        await conn.close()
    return {"small": small, "small_cheques": small_n, "deep_all": deep_all,
            "deep_site": deep_site, "cheques": cheques, "redemptions": total,
            "timed_close": redemptions_pending}


def cursor_of(row: Any) -> str:
    import base64

    raw = f"{row[0].astimezone(UTC).isoformat()}|{row[1]}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


async def time_pages(url: str, repeat: int, fx: dict[str, Any]) -> dict[str, Any]:
    import httpx

    from api.app import create_app
    from kit.settings import Settings

    data_dir = Path(tempfile.mkdtemp(prefix="passnum-scale-"))
    settings = Settings(data_dir=data_dir, database_url=url, log_json=True,
                        rate_limit_per_user_per_minute=100_000,
                        rate_limit_per_ip_per_minute=100_000, rate_limit_burst=100_000)
    app = create_app(settings, database_url=url, run_sealer=False)
    out: dict[str, Any] = {}
    async with app.router.lifespan_context(app):
        secret = app.state.jwt_secret
        who = {
            "operator": token(secret, 1, 1, "operator_admin", "operateur@bench"),
            "financer": token(secret, 2, 3002, "financer", "financeur@bench"),
            "site": token(secret, 3, 2, "site_mediator", "mediateur@bench"),
            "issuer": token(secret, 4, 3102, "issuer_agent", "agent@bench"),
        }
        deep_all = cursor_of(fx["deep_all"])
        deep_site = cursor_of(fx["deep_site"])
        paths = [
            ("financer dashboard, big programme (1)", "financer", "/financeur/programmes/1"),
            (f"financer dashboard, small programme ({fx['small_cheques']:,} cheques)",
             "financer", f"/financeur/programmes/{fx['small']}"),
            ("financer statements list", "financer", "/financeur/releves"),
            ("/operateur home", "operator", "/operateur"),
            ("/operateur/programmes", "operator", "/operateur/programmes"),
            ("/operateur/programmes/1", "operator", "/operateur/programmes/1"),
            ("/operateur/compensation (batches)", "operator", "/operateur/compensation"),
            ("API statements, operator (all)", "operator", "/api/v1/statements"),
            ("API redemptions, operator, page 1", "operator", "/api/v1/redemptions?limit=50"),
            ("API redemptions, operator, deep (cursor)", "operator",
             f"/api/v1/redemptions?limit=50&cursor={deep_all}"),
            ("API redemptions, site, page 1", "site", "/api/v1/redemptions?limit=50"),
            ("API redemptions, site, deep (cursor)", "site",
             f"/api/v1/redemptions?limit=50&cursor={deep_site}"),
            ("site statements list", "site", "/mediateur/releves"),
            ("site's day (/mediateur/encaissements)", "site", "/mediateur/encaissements"),
            ("issuer home (/prescripteur)", "issuer", "/prescripteur"),
        ]
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for name, role, path in paths:
                times, size, status = [], 0, 0
                for _ in range(repeat):
                    t = time.perf_counter()
                    answer = await client.get(
                        path, headers={"Authorization": f"Bearer {who[role]}"},
                        cookies={"passnum_session": who[role]})
                    times.append((time.perf_counter() - t) * 1000)
                    size, status = len(answer.content), answer.status_code
                if status != 200:
                    print(f"  !! {path}: HTTP {status}: {answer.text[:300]}")
                out[name] = {"ms": statistics.median(times), "bytes": size, "status": status,
                             "load": load()}
                log(f"{name}: {out[name]['ms']:.0f} ms ({size:,} bytes, HTTP {status}, "
                    f"load {out[name]['load']})")
    return out


async def time_jobs(url: str, fx: dict[str, Any], *, close: bool = True) -> dict[str, Any]:
    from clearing.batches import close_batch
    from clearing.expiry import expire_cheques

    engine = make_engine(url, pool_size=2, max_overflow=0)
    out: dict[str, Any] = {}
    try:
        sessionmaker = make_sessionmaker(engine)
        async with sessionmaker() as session:
            t = time.perf_counter()
            if close:
                async with session.begin():
                    batch, _ = await close_batch(session, cutoff=TIMED_CUTOFF, now=NOW)
                    n = batch.redemption_count
                    await session.rollback()
                name = f"close a batch ({n:,} redemptions; rolled back)"
                out[name] = {"ms": (time.perf_counter() - t) * 1000, "load": load()}
                log(f"{name}: {out[name]['ms'] / 1000:.1f} s")
        async with sessionmaker() as session:
            t = time.perf_counter()
            async with session.begin():
                await expire_cheques(session, today=NOW.date(), now=NOW)
                await session.rollback()
            out["expire (nothing due; rolled back)"] = {"ms": (time.perf_counter() - t) * 1000,
                                                       "load": load()}
            log(f"expire: {out['expire (nothing due; rolled back)']['ms']:.0f} ms")
    finally:
        await engine.dispose()
    return out


def time_cli(url: str, args: list[str], name: str) -> dict[str, Any]:
    """A `passnum` command in a process of its own: wall time and its peak memory, and the
    peak of all its processes together (the full audit has worker processes)."""
    env = {**os.environ, "DATABASE_URL": url}
    # `python -c` puts the working directory first on the import path: dropped, so the code
    # measured is PYTHONPATH's, as in this process (not the tree the script is run from).
    code = ("import resource, sys; sys.path[:] = [p for p in sys.path if p != '']; "
            "from api.cli import app; sys.argv = ['passnum'] + "
            f"{args!r}\ntry:\n    app()\nfinally:\n    print('MAXRSS', resource.getrusage("
            "resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)")
    t = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    tree = TreeMemory(process.pid)
    tree.start()
    stdout, stderr = process.communicate()
    elapsed = time.perf_counter() - t
    tree.stop = True
    rss = next((int(line.split()[1]) for line in stderr.splitlines()
                if line.startswith("MAXRSS")), 0)
    first = (stdout.strip() or stderr.strip()).splitlines()
    result = {"ms": elapsed * 1000, "peak_mb": rss / 1024, "exit": process.returncode,
              "load": load(), "said": first[0][:160] if first else ""}
    if tree.processes > 1:
        result["all_processes_peak_mb"] = tree.peak_kb / 1024
    log(f"{name}: {elapsed:.1f} s, peak {rss / 1024:.0f} MB"
        + (f" (all {tree.processes} processes together: {tree.peak_kb / 1024:.0f} MB)"
           if tree.processes > 1 else "")
        + f", exit {process.returncode}: {result['said']}")
    if process.returncode not in (0,):
        print("\n".join(stderr.splitlines()[:20]))
    return result


class TreeMemory(threading.Thread):
    """The largest sum of resident memory of a process and its descendants, sampled every
    0.2 s from /proc (Linux; nothing elsewhere)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak_kb, self.stop = pid, 0, False
        self.seen: set[int] = set()

    @property
    def processes(self) -> int:
        return len(self.seen)

    def run(self) -> None:
        while not self.stop and Path("/proc").is_dir():
            parents: dict[int, int] = {}
            for stat in Path("/proc").glob("[0-9]*/stat"):
                try:
                    fields = stat.read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                parents[int(stat.parent.name)] = int(fields[1])
            tree, grew = {self.pid}, True
            while grew:
                more = {p for p, parent in parents.items() if parent in tree} - tree
                tree |= more
                grew = bool(more)
            total = 0
            for pid in tree:
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                total += next((int(line.split()[1]) for line in status.splitlines()
                               if line.startswith("VmRSS:")), 0)
            self.seen |= tree
            self.peak_kb = max(self.peak_kb, total)
            time.sleep(0.2)


DAY = f"""
INSERT INTO redemption (cheque_id, programme_id, site_id, user_id, value_cents, service,
                        demarche_family, redeemed_at)
SELECT c.id, c.programme_id, 2 + pg_temp.h(c.id, 9) % {SITES}, 3, c.value_cents,
       'naviguer_web', NULL,
       $2::timestamptz + (row_number() OVER (ORDER BY c.id)) * interval '1 second'
FROM (SELECT id, programme_id, value_cents FROM cheque WHERE status = 'active'
      ORDER BY id LIMIT $1) c;
UPDATE cheque c SET status = 'redeemed', status_changed_at = r.redeemed_at
FROM redemption r WHERE r.cheque_id = c.id AND c.status = 'active' AND r.reversed_at IS NULL
  AND r.redeemed_at >= $2;
INSERT INTO ledger_account (code)
SELECT DISTINCT 'site:' || site_id || ':payable' FROM redemption WHERE redeemed_at >= $2
ON CONFLICT DO NOTHING;
"""

DAY_ENTRIES = """
CREATE TEMP TABLE ent AS
SELECT r.id AS rid, 'redeem:' || r.id AS key, format('{"serial":"%s"}', c.serial) AS memo,
       r.redeemed_at AS at, 'programme:' || r.programme_id || ':outstanding' AS c1,
       -r.value_cents AS a1, 'site:' || r.site_id || ':payable' AS c2, r.value_cents AS a2
FROM redemption r JOIN cheque c ON c.id = r.cheque_id
WHERE r.redeemed_at >= $1 AND NOT EXISTS (
    SELECT 1 FROM ledger_entry e WHERE e.idempotency_key = 'redeem:' || r.id);
WITH e AS (
  INSERT INTO ledger_entry (idempotency_key, kind, memo, created_at, content_hash)
  SELECT key, 'redemption', CAST(memo AS jsonb), at,
         encode(sha256(convert_to(format(
           '{"kind":"redemption","memo":%s,"postings":[["%s",%s],["%s",%s]]}',
           memo, c1, a1, c2, a2), 'UTF8')), 'hex')
  FROM ent ORDER BY rid RETURNING id, idempotency_key)
INSERT INTO ledger_posting (entry_id, account_id, amount_cents)
SELECT e.id, a.id, x.amount FROM e JOIN ent ON ent.key = e.idempotency_key
CROSS JOIN LATERAL (VALUES (ent.c1, ent.a1), (ent.c2, ent.a2)) x(code, amount)
JOIN ledger_account a ON a.code = x.code;
DROP TABLE ent;
"""


async def add_day(url: str, count: int) -> None:
    """`count` redemptions of one new day (after every other), their entries, sealed."""
    conn = await asyncpg.connect(libpq_url(url))
    try:
        last = await conn.fetchval("SELECT max(redeemed_at) FROM redemption")
        start = max(last, NOW) + timedelta(minutes=1)
        await conn.execute(HASH)
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            for statement in DAY.split(";"):
                if "$1" in statement:
                    await conn.execute(statement, count, start)
                elif "$2" in statement:
                    await conn.execute(statement.replace("$2", "$1"), start)
                elif statement.strip():
                    await conn.execute(statement)
            for statement in DAY_ENTRIES.split(";"):
                if statement.strip():
                    await conn.execute(statement, *([start] if "$1" in statement else []))
        await conn.execute("ANALYZE redemption")
    finally:
        await conn.close()
    from ledger.sealer import seal_once

    engine = make_engine(url, pool_size=2, max_overflow=0)
    try:
        await seal_once(make_sessionmaker(engine), limit=50_000)
    finally:
        await engine.dispose()


def record(entry: dict[str, Any]) -> None:
    with RESULTS.open("a") as f:
        f.write(json.dumps(entry, default=str) + "\n")


def print_table() -> None:
    runs = [json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()]
    latest: dict[tuple[str, int], dict[str, Any]] = {}
    for run in runs:  # runs of one kind add up, the last figure of each name kept
        key = (run["label"], run["cheques"])
        merged = latest.get(key, {"figures": {}})
        latest[key] = {**run, "figures": {**merged["figures"], **run["figures"]}}
    columns = sorted(latest, key=lambda k: (k[1], k[0] != "before"))
    names: list[str] = []
    figures: dict[tuple[str, int], dict[str, Any]] = {}
    for key in columns:
        figures[key] = {}
        for name, fig in latest[key]["figures"].items():
            # The sizes in a name ("small programme (1,850 cheques)") go into the cell.
            found = re.search(r" \(([\d,]+) (cheques|redemptions|new redemptions)[^)]*\)", name)
            short = re.sub(r" \([\d,]+ (cheques|redemptions)[^)]*\)", "", name)
            short = re.sub(r" after [\d,]+ new redemptions", " after a day of new redemptions",
                           short)
            figures[key][short] = {**fig, **({"n": found.group(1)} if found else {})}
            if short not in names:
                names.append(short)

    def cell(key: tuple[str, int], name: str) -> str:
        fig = figures[key].get(name)
        if fig is None:
            return "—"
        ms = fig["ms"]
        text = f"{ms:,.0f} ms" if ms < 10_000 else f"{ms / 1000:,.1f} s"
        if "peak_mb" in fig:
            text += f", {fig['peak_mb']:,.0f} MB"
        if "all_processes_peak_mb" in fig:
            text += f" ({fig['all_processes_peak_mb']:,.0f} MB with its workers)"
        if fig.get("n"):
            text += f" ({fig['n']})"
        return text

    def growth(name: str, label: str) -> str:
        sizes = sorted(k for k in columns if k[0] == label and name in figures[k])
        if len(sizes) < 2:
            return "—"
        small, large = figures[sizes[-2]][name]["ms"], figures[sizes[-1]][name]["ms"]
        return f"×{large / small:.1f}" if small else "—"

    labels = sorted({k[0] for k in columns}, key=lambda x: x != "before")
    head = [f"{label} {cheques / 1e6:g} M" for label, cheques in columns]
    head += [f"growth {label} (largest / next)" for label in labels]
    print("| path | " + " | ".join(head) + " |")
    print("|---|" + "---|" * len(head))
    for name in names:
        print(f"| {name} | " + " | ".join(cell(k, name) for k in columns) + " | "
              + " | ".join(growth(name, label) for label in labels) + " |")
    for key in columns:
        print(f"- {key[0]} {key[1]:,} cheques: {latest[key]['at']}, "
              f"load {latest[key]['load']}, commit {latest[key].get('commit', '?')}")


async def measure(url: str, args: argparse.Namespace) -> None:
    if args.upgrade:
        from migrations import registry

        await asyncio.to_thread(registry.upgrade, url)
        log("migrated to head")
    figures: dict[str, Any] = {}
    if args.upgrade and args.catch_up:
        figures["rollup catch-up (passnum rollup)"] = time_cli(url, ["rollup"], "rollup catch-up")
    fx = await fixtures(url)
    if not args.no_pages:
        figures.update(await time_pages(url, args.repeat, fx))
        figures.update(await time_jobs(url, fx, close=not args.no_close))
    if not args.no_audit:
        figures["full audit (passnum audit)"] = time_cli(url, ["audit"], "full audit")
    if args.day:
        t = time.perf_counter()
        await add_day(url, args.day)
        log(f"a day of {args.day:,} redemptions added and sealed "
            f"({time.perf_counter() - t:.0f} s)")
        if args.catch_up:
            time_cli(url, ["rollup"], "rollup catch-up after the day")
        figures[f"incremental audit after {args.day:,} new redemptions"] = time_cli(
            url, ["audit", "--incremental"], "incremental audit")
    import api

    commit = subprocess.run(["git", "-C", str(Path(api.__file__).parent), "rev-parse",  # noqa: ASYNC221
                             "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    record({"label": args.label, "cheques": fx["cheques"], "redemptions": fx["redemptions"],
            "at": datetime.now(UTC).isoformat(timespec="seconds"), "load": load(),
            "code": str(Path(api.__file__).parent.parent), "commit": commit,
            "figures": figures})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="database name on DATABASE_URL's server")
    parser.add_argument("--cheques", type=int, default=1_000_000)
    parser.add_argument("--build", action="store_true", help="create and fill the database")
    parser.add_argument("--schema", default="head",
                        help="the migration to build at (an old code's last one: 0007_ledger_seal)")
    parser.add_argument("--drop", action="store_true", help="drop the database and stop")
    parser.add_argument("--label", default="after")
    parser.add_argument("--upgrade", action="store_true",
                        help="migrate to this code's head before timing")
    parser.add_argument("--catch-up", action="store_true",
                        help="run `passnum rollup` (the figures' rollup) before timing")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--day", type=int, default=0,
                        help="then add N redemptions of a new day and time the incremental audit")
    parser.add_argument("--no-audit", action="store_true")
    parser.add_argument("--no-close", action="store_true", help="do not time closing a batch")
    parser.add_argument("--no-pages", action="store_true",
                        help="time only the audits (and the day), not the pages and jobs")
    parser.add_argument("--table", action="store_true", help="print the recorded runs")
    args = parser.parse_args()
    if args.table:
        print_table()
        return
    server_url = resolve_url(os.environ.get("DATABASE_URL"), ROOT / ".passnum")
    url = with_database(server_url, args.db)
    if args.drop:
        asyncio.run(admin(server_url, f'DROP DATABASE IF EXISTS "{args.db}" WITH (FORCE)'))
        return
    if args.build:
        asyncio.run(admin(server_url, f'CREATE DATABASE "{args.db}"'))
        from migrations import registry

        registry.upgrade(url, args.schema)
        t = time.perf_counter()
        asyncio.run(build(url, args.cheques))
        log(f"built {args.cheques:,} cheques in {time.perf_counter() - t:.0f} s "
            f"(load {load()})")
        return
    asyncio.run(measure(url, args))
    print_table()


if __name__ == "__main__":
    main()
