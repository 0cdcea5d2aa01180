"""Benchmark: redeeming cheques over HTTP against the database's own ceiling, and offline batches.

    .venv/bin/python bench/redemption.py [--cheques 40000] [--seconds 10] [--concurrency 32]
                                         [--workers 2] [--batches 100] [--batch-size 500]
                                         [--profile DIR]

What it does, in one run, on a scratch database it creates, migrates and drops (on the embedded
PostgreSQL, or on DATABASE_URL's server):
1. issues the cheques through the service functions (`pass_.issuance.issue_booklet`, booklets of
   50), for the HTTP runs, the ceiling and the offline batches;
2. measures the ceiling with `pgbench` (same clients, same database, prepared statements): the
   redemption's own SQL — one call of the database function `pass_redeem` for one scan (every
   rule, the claim, the redemption, the ledger entry through `ledger_post_many`) as its own
   transaction — with none of the HTTP, authentication, idempotency record or Python around
   it (the server groups the scans that arrive together into one call: api/redeem_online.py);
3. starts the real server as a subprocess (`passnum serve --workers 2`) and redeems cheques over
   HTTP with wrk (Debian's package, installed by this script when missing) — `POST
   /api/v1/redemptions` with a QR token and a fresh Idempotency-Key, `--concurrency` keep-alive
   connections for `--seconds`, spread over 8 mediators of 4 sites — after a warm-up and a
   one-connection run (the service time with no queue); every answer must be 201;
4. posts offline batches (`POST /api/v1/redemptions/batch`) from 4 connections (aiohttp).
It prints redemptions/s, p50/p99 latency, the ratio to the ceiling, and offline cheques/s.
The load generators run on the same machine and share its 2 cores with the server and
PostgreSQL (as pgbench does for the ceiling): the figures are a floor for dedicated hardware.

`--profile DIR` records each server worker with py-spy during the HTTP run (flame graphs).
aiohttp (the batches' client) and py-spy are development dependencies (`pip install -e '.[dev]'`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp  # noqa: E402
import asyncpg  # noqa: E402

from kit.clock import paris_day, paris_midnight, paris_today, utcnow  # noqa: E402
from kit.db import execute_on_server as admin  # noqa: E402
from kit.db import (  # noqa: E402
    libpq_url,
    make_engine,
    make_sessionmaker,
    resolve_url,
    transaction,
    with_database,
)
from ledger.sealer import seal_once  # noqa: E402
from migrations import registry  # noqa: E402
from pass_ import accounts, beneficiaries, issuance, programmes  # noqa: E402
from pass_.enums import FinancerRole, NeedLevel, OrganisationKind, Qualification, Role  # noqa: E402
from pass_.programmes import Actor  # noqa: E402
from pass_.schemas import (  # noqa: E402
    BeneficiaryCreate,
    FinancerIn,
    IssuerIn,
    OrganisationCreate,
    ProgrammeCreate,
    UserCreate,
)
from pass_.tokens import Keyring  # noqa: E402
from pass_.validation import luhn_ok  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BOOKLET = 50
SITES = 4
MEDIATORS_PER_SITE = 2
PASSWORD = "banc-d-essai-redemption"


def siret(n: int) -> str:
    prefix = f"{n:013d}"
    return next(prefix + d for d in "0123456789" if luhn_ok(prefix + d))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------------------------------ setup


async def setup(url: str, keyring: Keyring, groups: dict[str, int]) -> dict[str, Any]:
    """Organisations, a programme, mediators, and `groups` (name → count) of active cheques."""
    engine = make_engine(url, pool_size=2, max_overflow=0)
    sessionmaker = make_sessionmaker(engine)
    # Whole booklets: a group's last booklet may hold more cheques than the group uses.
    total = sum(-(-count // BOOKLET) * BOOKLET for count in groups.values())
    now = utcnow()
    try:
        async with transaction(sessionmaker) as session:
            n = iter(range(1, 10_000))

            async def org(kind: OrganisationKind, **extra: object) -> int:
                created = await accounts.create_organisation(
                    session,
                    OrganisationCreate(
                        kind=kind,
                        name=f"{kind.value} {next(n)}",
                        siret=siret(next(n)),
                        commune_insee="35238",
                        **extra,  # type: ignore[arg-type]
                    ),
                )
                return created.id  # type: ignore[return-value]

            state = await org(OrganisationKind.financer)
            local = await org(OrganisationKind.financer)
            issuer = await org(OrganisationKind.issuer)
            sites = []
            for _ in range(SITES):
                site = await org(OrganisationKind.site, iban="FR7630006000011234567890189")
                await accounts.set_qualification(
                    session, site_id=site, to=Qualification.qualified, now=now
                )
                sites.append(site)
            mediators = []
            for site in sites:
                for m in range(MEDIATORS_PER_SITE):
                    email = f"mediateur{m}.lieu{site}@banc.exemple.fr"
                    await accounts.create_user(
                        session,
                        UserCreate(
                            email=email,
                            password=PASSWORD,
                            organisation_id=site,
                            role=Role.site_mediator,
                        ),
                    )
                    mediators.append(email)
            year = paris_today().year
            cents = total * 1000
            programme = await programmes.create_programme(
                session,
                ProgrammeCreate(
                    name="Pass numérique — banc d'essai des encaissements",
                    territory=["35"],
                    booklet_sizes=[BOOKLET],
                    state_share_bp=5000,
                    valid_until=paris_today().replace(month=12, day=31),
                    redeem_until=paris_today().replace(year=year + 1, month=1, day=31),
                    financers=[
                        FinancerIn(organisation_id=state, role=FinancerRole.state,
                                   commitment_cents=cents),
                        FinancerIn(organisation_id=local, role=FinancerRole.local,
                                   commitment_cents=cents),
                    ],
                    issuers=[IssuerIn(organisation_id=issuer, quota_cheques=total)],
                ),
                today=paris_today(),
            )
        agent = Actor(user_id=None, organisation_id=issuer, role=Role.issuer_agent)
        cheques: dict[str, list[tuple[int, str]]] = {}
        for name, count in groups.items():
            cheques[name] = []
            for _ in range(0, count, BOOKLET):
                async with transaction(sessionmaker) as session:
                    person = await beneficiaries.create_beneficiary(
                        session, issuer_id=issuer,
                        data=BeneficiaryCreate(reference=f"BANC-{next(n)}",
                                               need_level=NeedLevel.inclusion),
                    )
                    booklet = await issuance.issue_booklet(
                        session, keyring=keyring, actor=agent,
                        programme_id=programme.id,  # type: ignore[arg-type]
                        beneficiary_id=person.id,  # type: ignore[arg-type]
                        size=BOOKLET, now=now,
                    )
                cheques[name] += [(c.id, c.token) for c in booklet.cheques]
            cheques[name] = cheques[name][:count]
        return {"programme": programme.id, "sites": sites, "mediators": mediators,
                "cheques": cheques}
    finally:
        await engine.dispose()


# ------------------------------------------------------------------------------------ server


def start_server(url: str, data_dir: Path, port: int, workers: int) -> subprocess.Popen[bytes]:
    """`passnum serve` as in production (access log line per request included), its log in
    `data_dir/server.log` (a pipe nobody reads would block the workers once full)."""
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "PASSNUM_DATA_DIR": str(data_dir),
        # The limits are per user; the bench's 8 mediators redeem thousands a second.
        "PASSNUM_RATE_LIMIT_PER_USER_PER_MINUTE": "100000000",
        "PASSNUM_RATE_LIMIT_PER_IP_PER_MINUTE": "100000000",
        "PASSNUM_RATE_LIMIT_BURST": "100000000",
    }
    return subprocess.Popen(
        [str(ROOT / ".venv/bin/passnum"), "serve", "--workers", str(workers),
         "--port", str(port)],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
        stderr=(data_dir / "server.log").open("wb"), start_new_session=True,
    )


async def wait_ready(base: str, server: subprocess.Popen[bytes], workers: int,
                     log: Path) -> None:  # noqa: ASYNC240
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise RuntimeError(f"server exited, see {log}")
            try:
                # Each worker answers once it has started; ask a few times to reach both.
                oks = 0
                for _ in range(workers * 4):
                    async with http.get(f"{base}/healthz") as r:
                        oks += r.status == 200
                if oks == workers * 4:
                    return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError("server not ready after 60 s")


async def login(base: str, emails: list[str]) -> list[str]:
    async with aiohttp.ClientSession() as http:
        tokens = []
        for email in emails:
            async with http.post(f"{base}/api/v1/auth/token",
                                 data={"username": email, "password": PASSWORD}) as r:
                body = await r.json()
                if r.status != 200:
                    raise RuntimeError(f"login refused for {email}: {r.status} {body}")
                tokens.append(body["access_token"])
        return tokens


def _children(server: subprocess.Popen[bytes]) -> list[tuple[int, str]]:
    """(pid, process name) of the server's multiprocessing children: workers and sealer."""
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(server.pid)],
                         capture_output=True, text=True, check=False).stdout
    return [(int(p), Path(f"/proc/{p}/comm").read_text().strip()) for p in out.split()
            if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text()]


def worker_pids(server: subprocess.Popen[bytes]) -> list[int]:
    """The processes serving requests: uvicorn's workers (children of the supervisor)."""
    pids = [pid for pid, name in _children(server) if name != "passnum-sealer"]
    return pids or [server.pid]


def sealer_pids(server: subprocess.Popen[bytes]) -> list[int]:
    """The ledger sealer process `passnum serve` runs beside its workers."""
    return [pid for pid, name in _children(server) if name == "passnum-sealer"]


def cpu_seconds(pids: list[int], *, children: bool = False) -> float:
    """User + system CPU time of `pids` (Linux /proc), with `children` that of their children
    that have exited too (a PostgreSQL backend's time goes to the postmaster when it ends)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
        if children:
            total += int(fields[13]) + int(fields[14])
    return total / os.sysconf("SC_CLK_TCK")


def postgres_cpu() -> dict[int, float]:
    """CPU seconds of every PostgreSQL process of the machine, by pid, the ended backends
    included (the server serves nothing else during the run: the sum is what the load cost)."""
    found: dict[int, float] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "comm").read_text().strip() != "postgres":
                continue
            found[int(proc.name)] = cpu_seconds([int(proc.name)], children=True)
        except OSError:  # gone meanwhile
            continue
    return found


def postgres_cpu_since(before: dict[int, float]) -> float:
    after = postgres_cpu()
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def _own_cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


class CpuMeter:
    """CPU seconds spent during a load by the server's workers, its sealer, PostgreSQL, and
    the load generator (`load`: this process, or its ended children such as wrk); py-spy on
    the workers meanwhile when `profile` says where to write."""

    def __init__(self, server: subprocess.Popen[bytes], *, load: int,
                 profile: tuple[Path, str] | None = None) -> None:
        self.workers, self.sealers, self.load = worker_pids(server), sealer_pids(server), load
        self.profilers = start_profilers(server, *profile) if profile else []
        self.before = (cpu_seconds(self.workers), cpu_seconds(self.sealers), postgres_cpu(),
                       _own_cpu(load))

    def stop(self) -> dict[str, float]:
        workers, sealers, pg, load = self.before
        spent = {"workers": cpu_seconds(self.workers) - workers,
                 "sealer": cpu_seconds(self.sealers) - sealers,
                 "postgres": postgres_cpu_since(pg),
                 "load": _own_cpu(self.load) - load}
        for profiler in self.profilers:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(timeout=60)
        return spent


def start_profilers(
    server: subprocess.Popen[bytes], out: Path, fmt: str
) -> list[subprocess.Popen[bytes]]:
    """py-spy on each worker process of the server (children of the uvicorn supervisor)."""
    out.mkdir(parents=True, exist_ok=True)
    return [
        subprocess.Popen(
            [str(ROOT / ".venv/bin/py-spy"), "record", "--pid", str(pid), "--rate", "200",
             "--format", fmt, "--output", str(out / f"worker-{pid}.{fmt}"), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for pid in worker_pids(server)
    ]


# ------------------------------------------------------------------------------------ loads


WRK_SCRIPT = """\
-- One POST /api/v1/redemptions per QR token of a slice of the tokens file, a fresh
-- Idempotency-Key each, the mediators' access tokens in turn. args: tokens file, access
-- tokens file, first and last line (1-based), key prefix.
local codes, auth, i, last, prefix = {}, {}, 0, 0, ""
function init(args)
  for line in io.lines(args[1]) do codes[#codes + 1] = line end
  for line in io.lines(args[2]) do auth[#auth + 1] = line end
  i, last, prefix = tonumber(args[3]) - 1, tonumber(args[4]), args[5]
end
function request()
  -- Past the slice, the last token again: answered 409 and counted as errors, so the run fails.
  if i < last then i = i + 1 end
  local body = '{"code":"' .. codes[i] .. '","service":"realiser_demarche","demarche_family":"caf"}'
  return wrk.format("POST", "/api/v1/redemptions", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. auth[(i % #auth) + 1],
    ["Idempotency-Key"] = prefix .. "-" .. i .. "-" .. math.random(1, 1000000000),
  }, body)
end
function done(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %d %d %d %.1f %.1f %.1f %.1f\\n",
    summary.requests, summary.errors.status, summary.errors.connect + summary.errors.read
    + summary.errors.write, summary.errors.timeout, summary.duration, 0,
    latency:percentile(50), latency:percentile(99), latency.mean, latency.max))
end
"""


def ensure_wrk() -> str:
    """wrk from Debian's package (installed here if missing and we may: CI runs as root)."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True,
                       stdout=subprocess.DEVNULL)
        found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk is needed: apt-get install wrk")
    return found


def run_wrk(base: str, files: tuple[Path, Path, Path], *, first: int, last: int,
            connections: int, seconds: float, prefix: str) -> dict[str, float]:
    """wrk on the tokens [first, last) of the tokens file, `connections` keep-alive
    connections for `seconds`; returns requests, errors and latencies (ms)."""
    script, codes, auth = files
    run = subprocess.run(
        [ensure_wrk(), "-t", "1", "-c", str(connections), "-d", f"{max(1, round(seconds))}s",
         "--timeout", "10s", "-s", str(script), base, "--",
         str(codes), str(auth), str(first + 1), str(last), prefix],
        capture_output=True, text=True, check=False,
    )
    match = re.search(r"^RESULT (.*)$", run.stdout, re.MULTILINE)
    if run.returncode != 0 or not match:
        raise RuntimeError(f"wrk failed:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")
    requests, bad_status, socket_errors, timeouts, micros, _, p50, p99, mean, worst = (
        float(v) for v in match.group(1).split())
    if bad_status or socket_errors or timeouts:
        raise RuntimeError(f"wrk saw {bad_status:.0f} non-2xx answers, {socket_errors:.0f} "
                           f"socket errors, {timeouts:.0f} timeouts (tokens exhausted?)\n"
                           f"{run.stdout[-2000:]}")
    return {"requests": requests, "seconds": micros / 1e6, "p50": p50 / 1000,
            "p99": p99 / 1000, "mean": mean / 1000, "max": worst / 1000}


async def redeem_offline(base: str, tokens: list[str], codes: list[str], batch_size: int,
                         concurrency: int) -> tuple[float, dict[str, int]]:
    batches = [codes[i:i + batch_size] for i in range(0, len(codes), batch_size)]
    # Two hours ago, but not before today's Paris midnight: the cheques are valid from today,
    # and a scan of yesterday (a run just after midnight) would be refused as not yet valid.
    now = utcnow()
    scanned = max(now - timedelta(hours=2), paris_midnight(paris_day(now))).isoformat()
    counts: dict[str, int] = {}
    async with aiohttp.ClientSession() as http:

        async def client(n: int) -> None:
            headers = {"Authorization": f"Bearer {tokens[n % len(tokens)]}"}
            while batches:
                batch = batches.pop()
                items = [{"code": c, "service": "naviguer_web", "scanned_at": scanned,
                          "idempotency_key": uuid.uuid4().hex} for c in batch]
                async with http.post(f"{base}/api/v1/redemptions/batch",
                                     json={"items": items}, headers=headers) as r:
                    body = await r.json()
                    if r.status != 200:
                        raise RuntimeError(f"batch refused: {r.status} {body}")
                for key in ("accepted", "refused", "conflicts"):
                    counts[key] = counts.get(key, 0) + body[key]

        start = time.perf_counter()
        await asyncio.gather(*(client(n) for n in range(concurrency)))
        return time.perf_counter() - start, counts


# The ceiling: the very SQL of a redemption, the call of `pass_redeem` (pass_/redeem.sql) for
# one scan, as its own transaction, with the cheque's serial and stored token (as a scanned QR
# code).
PGBENCH_SCRIPT = """\
\\set k :k + 1
\\set cid :lo + (:k - 1) * :clients + :client_id
SELECT refusal FROM pass_redeem(
    ARRAY[(SELECT serial FROM cheque WHERE id = :cid)],
    ARRAY[(SELECT token FROM cheque WHERE id = :cid)], ARRAY[NULL::bigint], ARRAY[NULL::bigint],
    ARRAY[CAST(:site AS bigint)], ARRAY[NULL::bigint],
    ARRAY[CAST(now() AT TIME ZONE 'Europe/Paris' AS date)], ARRAY['realiser_demarche'],
    ARRAY['caf'], ARRAY[NULL::timestamptz], now(), NULL, NULL, false);
"""


def pgbench(url: str, *, first_id: int, count: int, clients: int, site: int) -> float:
    """The ceiling: transactions/s of the equivalent SQL, on `count` cheques from `first_id`."""
    import pgserver  # its wheel carries PostgreSQL's client programs, pgbench included

    bundled = Path(pgserver.__file__).parent / "pginstall" / "bin" / "pgbench"
    binary = str(bundled) if bundled.exists() else shutil.which("pgbench") or "pgbench"
    per_client = count // clients
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
        script.write(PGBENCH_SCRIPT)
    try:
        run = subprocess.run(
            [binary, "-n", "-M", "prepared", "-c", str(clients), "-j", "2",
             "-t", str(per_client), "-f", script.name,
             "-D", "k=0", "-D", f"lo={first_id}", "-D", f"clients={clients}",
             "-D", f"site={site}", libpq_url(url)],
            capture_output=True, text=True, check=False,
        )
    finally:
        os.unlink(script.name)
    if run.returncode != 0:
        raise RuntimeError(f"pgbench failed:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")
    out = run.stdout
    failed = re.search(r"number of failed transactions: (\d+)", out)
    if failed and int(failed.group(1)):
        raise RuntimeError(f"pgbench transactions failed:\n{out}")
    match = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out)
    if not match:
        raise RuntimeError(f"unexpected pgbench output:\n{out}")
    return float(match.group(1))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ------------------------------------------------------------------------------------ main


async def main(args: argparse.Namespace) -> None:
    server_url = resolve_url(os.environ.get("DATABASE_URL"), ROOT / ".passnum")
    name = f"passnum_bench_redemption_{os.getpid()}"
    await admin(server_url, f'CREATE DATABASE "{name}"')
    url = with_database(server_url, name)
    data_dir = Path(tempfile.mkdtemp(prefix="passnum-bench-"))
    server: subprocess.Popen[bytes] | None = None
    try:
        registry.upgrade_in_thread(url)  # Alembic's env runs its own event loop
        keyring = Keyring.load_or_create(data_dir / "keys")
        t0 = time.perf_counter()
        # The ceiling gets a whole number of transactions per client.
        ceiling_count = args.ceiling_cheques - args.ceiling_cheques % args.concurrency
        world = await setup(url, keyring, {
            "online": args.cheques, "ceiling": ceiling_count,
            "offline": args.batches * args.batch_size,
        })
        issued = sum(len(v) for v in world["cheques"].values())
        print(f"setup: {issued} cheques issued through issue_booklet in "
              f"{time.perf_counter() - t0:.1f} s")
        # As after any bulk load (and as `pgbench -i` does): the setup's ledger entries sealed,
        # the fresh tables vacuumed and analysed. Otherwise an autovacuum run, the first
        # reads' hint-bit writes or the sealing of the setup's entries fall on one measurement
        # and not the other (seen: an autovacuum of `cheque` and `ledger_entry` during pgbench).
        engine = make_engine(url)
        try:
            await seal_once(make_sessionmaker(engine))
        finally:
            await engine.dispose()
        conn = await asyncpg.connect(libpq_url(url))
        try:
            await conn.execute("VACUUM (ANALYZE)")
        finally:
            await conn.close()

        # The ceiling first, before the server holds connections of its own (the embedded
        # server allows 100) and before its sealer runs.
        conn = await asyncpg.connect(libpq_url(url))
        try:
            ids = [cid for cid, _ in world["cheques"]["ceiling"]]
            if max(ids) - min(ids) + 1 != len(ids):
                raise RuntimeError("the ceiling's cheques are not a contiguous id range")
            site = world["sites"][0]
            # The site's account appears with its first redemption: make it now.
            await conn.execute("INSERT INTO ledger_account (code) VALUES ($1) "
                               "ON CONFLICT (code) DO NOTHING", f"site:{site}:payable")
            ceiling_pg_before = postgres_cpu()
            pgbench_before = resource.getrusage(resource.RUSAGE_CHILDREN)
            ceiling_started = time.perf_counter()
            ceiling = pgbench(url, first_id=min(ids), count=len(ids),
                              clients=args.concurrency, site=site)
            ceiling_seconds = time.perf_counter() - ceiling_started
            ceiling_pg_cpu = postgres_cpu_since(ceiling_pg_before)
            pgbench_after = resource.getrusage(resource.RUSAGE_CHILDREN)
            pgbench_cpu = (pgbench_after.ru_utime + pgbench_after.ru_stime
                           - pgbench_before.ru_utime - pgbench_before.ru_stime)
            claimed = await conn.fetchval(
                "SELECT count(*) FROM cheque WHERE id = ANY($1) AND status = 'redeemed'", ids)
            if claimed != len(ids):
                raise RuntimeError(f"pgbench claimed {claimed} of {len(ids)} cheques")
        finally:
            await conn.close()

        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = start_server(url, data_dir, port, args.workers)
        await wait_ready(base, server, args.workers, data_dir / "server.log")
        tokens = await login(base, world["mediators"])
        codes = [token for _, token in world["cheques"]["online"]]
        script, codes_file, auth_file = (data_dir / "redeem.lua", data_dir / "codes.txt",
                                         data_dir / "auth.txt")
        script.write_text(WRK_SCRIPT)
        codes_file.write_text("\n".join(codes) + "\n")
        auth_file.write_text("\n".join(tokens) + "\n")
        files = (script, codes_file, auth_file)

        # Warm-up (connections, prepared statements, each site's first redemption), not counted.
        warm = len(codes) // 8
        run_wrk(base, files, first=0, last=warm, connections=args.concurrency, seconds=2,
                prefix="warm")
        # Service time without queueing: one connection, one request at a time.
        alone = run_wrk(base, files, first=warm, last=2 * warm, connections=1, seconds=2,
                        prefix="alone")
        profile = (Path(args.profile), args.profile_format) if args.profile else None
        load_before = os.getloadavg()[0]
        meter = CpuMeter(server, load=resource.RUSAGE_CHILDREN,
                         profile=profile if args.profile_stage == "online" else None)
        online = run_wrk(base, files, first=2 * warm, last=len(codes),
                         connections=args.concurrency, seconds=args.seconds, prefix="online")
        online_cpu = meter.stop()
        done = int(online["requests"])
        rate = done / online["seconds"]
        conn = await asyncpg.connect(libpq_url(url))
        try:  # what wrk counted as answered 201 is in the database (and maybe a few in flight)
            redeemed = await conn.fetchval(
                "SELECT count(*) FROM redemption WHERE cheque_id = ANY($1)",
                [cid for cid, _ in world["cheques"]["online"]])
        finally:
            await conn.close()
        if redeemed < done + alone["requests"]:
            raise RuntimeError(f"{redeemed} redemptions in the database for "
                               f"{done + alone['requests']:.0f} answered 201")

        offline_codes = [token for _, token in world["cheques"]["offline"]]
        meter = CpuMeter(server, load=resource.RUSAGE_SELF,
                         profile=profile if args.profile_stage == "offline" else None)
        off_seconds, counts = await redeem_offline(
            base, tokens, offline_codes, args.batch_size, args.offline_concurrency)
        offline_cpu = meter.stop()
        load_after = os.getloadavg()[0]
        if counts.get("accepted") != len(offline_codes):
            raise RuntimeError(f"offline outcomes: {counts}")

        cores = os.cpu_count()
        print(f"machine: {cores} cores shared by PostgreSQL, {args.workers} server workers and "
              f"the load generator (wrk for the online load, aiohttp for the batches); "
              f"load average {load_before:.1f} before, {load_after:.1f} after")
        print(f"online  POST /api/v1/redemptions with a QR code, wrk, {args.concurrency} "
              f"keep-alive connections, {args.seconds:g} s, every answer 201")
        print(f"        {rate:8.0f} redemptions/s   p50 {online['p50']:6.1f} ms   "
              f"p99 {online['p99']:6.1f} ms   mean {online['mean']:6.1f} ms   "
              f"max {online['max']:6.1f} ms   ({done} redemptions)")
        print(f"        one connection alone ({alone['requests']:.0f} requests): p50 "
              f"{alone['p50']:.1f} ms, p99 {alone['p99']:.1f} ms (service time, no queue)")
        busy = sum(online_cpu.values()) / online["seconds"]
        print(f"        CPU a redemption: server workers "
              f"{online_cpu['workers'] / done * 1000:.2f} ms, "
              f"sealer {online_cpu['sealer'] / done * 1000:.2f} ms, "
              f"PostgreSQL {online_cpu['postgres'] / done * 1000:.2f} ms, "
              f"wrk {online_cpu['load'] / done * 1000:.2f} ms")
        print(f"        (user + system time; {busy:.2f} of the {cores} cores busy)")
        print(f"ceiling pgbench, the same SQL (pass_redeem) as one transaction, "
              f"{args.concurrency} clients, prepared, {len(ids)} cheques "
              f"(pgbench runs on the same cores)")
        print(f"        {ceiling:8.0f} transactions/s   CPU a transaction: PostgreSQL "
              f"{ceiling_pg_cpu / len(ids) * 1000:.2f} ms, pgbench "
              f"{pgbench_cpu / len(ids) * 1000:.2f} ms "
              f"({(ceiling_pg_cpu + pgbench_cpu) / ceiling_seconds:.2f} of the {cores} cores busy)")
        print(f"ratio   {rate / ceiling:8.2f}   (aim ≥ 0.4 with p99 < 50 ms)")
        print(f"offline POST /api/v1/redemptions/batch, {args.batches} batches of "
              f"{args.batch_size}, {args.offline_concurrency} connections")
        print(f"        {len(offline_codes) / off_seconds:8.0f} cheques/s   "
              f"({off_seconds / args.batches * args.offline_concurrency * 1000:.0f} ms a batch; "
              f"aim ≥ 5,000 cheques/s)")
        n_off = len(offline_codes)
        print(f"        CPU a cheque: server workers "
              f"{offline_cpu['workers'] / n_off * 1e6:.0f} µs, "
              f"sealer {offline_cpu['sealer'] / n_off * 1e6:.0f} µs, "
              f"PostgreSQL {offline_cpu['postgres'] / n_off * 1e6:.0f} µs, "
              f"client (this process) {offline_cpu['load'] / n_off * 1e6:.0f} µs")
        if args.profile:
            print(f"profiles: {args.profile}/worker-*.{args.profile_format}")
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
        shutil.rmtree(data_dir, ignore_errors=True)
        await admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cheques", type=int, default=40_000,
                        help="QR codes for the online runs (warm-up, one connection, load)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the online load")
    parser.add_argument("--ceiling-cheques", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--offline-concurrency", type=int, default=4)
    parser.add_argument("--profile", metavar="DIR", default=None)
    parser.add_argument("--profile-stage", choices=["online", "offline"], default="online",
                        help="which load the py-spy profiles cover")
    parser.add_argument("--profile-format", choices=["flamegraph", "raw", "speedscope"],
                        default="flamegraph")
    args = parser.parse_args()
    # A SIGTERM unwinds like an exception, so the server is stopped and the database dropped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:  # the load generator's own CPU competes with the server's: use the faster loop
        import uvloop
    except ImportError:
        asyncio.run(main(args))
    else:
        uvloop.run(main(args))
