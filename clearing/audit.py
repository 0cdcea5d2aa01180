"""The audit of DESIGN.md §8: everything recomputed from the journal, each difference listed.

`run_audit` gathers the ledger's own checks (balance of every entry, hash chain), issuance's
(cheque statuses against each programme's `outstanding` balance), redemption's (cheque statuses
against redemptions, each redemption's ledger entry) and clearing's, so
`passnum audit` and `GET /api/v1/audit` see one report. Clearing's checks trust neither the
statements nor the stored allocations: they replay the allocation rule (DESIGN.md §6) over
every batch's redemptions, in batch order and clearing order, and rebuild every statement from
the redemptions (clearing/audit_replay.py), then compare with what is stored and with the
journal:

- per closed batch: Σ site gross = Σ redemptions = Σ financer allocations, and the batch row;
- per redemption: its stored allocation = the replayed one (parts summing to its value);
- per statement: totals, commission or fee, net, lines and fingerprint as recomputed, and its
  ledger entry (`batch:<b>:site:<s>`, `batch:<b>:financer:<f>`, `credit:<p>:<f>`);
- per payment: a paid statement has its `paid:<statement>` entry for the amount, and only it;
- per account: a site's `payable` = its live redemptions not yet cleared, its `payout` = its
  cleared statements not yet paid; a financer's `receivable` = −its statements not yet paid.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from clearing import journal
from clearing.audit_replay import (
    STREAM_PREFETCH,
    Recomputed,
    replay_batches,
)
from clearing.batches import (
    OrderedLinesDigest,
    financer_lines_digest,
    statement_hash,
)
from clearing.invoices_audit import (
    RECEIVABLE_FROM_INVOICES,
    SETTLED_BY_INVOICES,
    audit_invoices,
)
from kit.db import raw_connection
from kit.snapshot import (
    Snapshot,
    all_or_none,
    export_snapshot,
    in_processes,
    read_at,
    snapshot_session,
)
from ledger.audit import ChainHead, Difference, audit_ledger, audit_ledger_since, chain_head
from pass_.issuance import audit_issuance
from pass_.redemption import audit_double_redemptions, audit_redemptions
from pass_.reporting import audit_rollup


@dataclass
class AuditResult:
    ok: bool
    differences: list[Any] = field(default_factory=list)
    summary: str = ""


# From this many journal entries on, the full audit reads in parallel (below, a few processes
# would cost more than they save).
PARALLEL_FROM = 200_000
Check = Callable[[AsyncSession], Awaitable[list[Difference]]]


async def run_audit(session: AsyncSession, *, processes: int = 2,
                    parallel_from: int = PARALLEL_FROM) -> AuditResult:
    """The full audit: everything recomputed from the whole journal. Conforming, it records a
    checkpoint (`audit_checkpoint`) from which `run_incremental_audit` starts.

    With a journal of `parallel_from` entries or more, and a transaction that other
    connections can read with (`kit.snapshot.export_snapshot`), every part runs at once on a
    connection of its own, all reading the session's one state, and the journal's entries
    and the statements' lines are checked in `processes` worker processes: the same
    differences in the same order, on every core."""
    head = await chain_head(session)  # before reading: what the checkpoint vouches for
    digests: dict[int, str] = {}
    allocated: dict[int, dict[int, int]] = {}
    balances: dict[str, int] = {}  # every posting's sum, filled by the balance check
    snapshot = (await export_snapshot(session) if head.entry_id >= parallel_from else None)
    checks: list[Check] = [
        lambda s: audit_ledger(s, snapshot=snapshot, processes=processes),
        audit_issuance,
        audit_redemptions,
        audit_double_redemptions,
        lambda s: audit_clearing(s, digests=digests, allocated_out=allocated,
                                 balances=balances, snapshot=snapshot),
        audit_rollup,
        audit_invoices,  # issue 14: invoices, bank lines
    ]
    if snapshot is None:
        differences = [d for check in checks for d in await check(session)]
    else:
        found = await all_or_none(*(_at(snapshot, check) for check in checks))
        differences = [d for part in found for d in part]
    ok = not differences
    summary = (
        "journal équilibré, chaîne de hachage intègre, relevés conformes"
        if ok else f"{len(differences)} écart(s)"
    )
    if ok:  # the balances as of the checkpoint: all of them less what came after it
        for code, cents in (await balances_since(session, head)).items():
            balances[code] = balances.get(code, 0) - cents
        await record_checkpoint(session, "full", head, digests, allocated, balances)
    return AuditResult(ok=ok, differences=differences, summary=summary)


async def _at(snapshot: Snapshot, check: Check) -> list[Difference]:
    """`check` on a session of its own reading `snapshot`."""
    async with snapshot_session(snapshot) as session:
        return await check(session)


async def run_incremental_audit(session: AsyncSession) -> AuditResult:
    """The audit of what came after the last checkpoint: the journal's entries and seals
    since (from the checkpoint's chain hash), every batch closed since (replayed from the
    checkpoint's allocations), each earlier batch's statements against the digest the
    checkpoint recorded, the sites' and financers' balances (the checkpoint's plus what was
    posted since) against the redemptions and statements. Without a checkpoint, the full
    audit runs. Conforming, it records a checkpoint in turn."""
    checkpoint = await latest_checkpoint(session)
    if checkpoint is None:
        result = await run_audit(session)
        result.summary += " (audit complet : aucun point de contrôle)"
        return result
    head = await chain_head(session)
    since = ChainHead(checkpoint["sealed_seq"], checkpoint["chain_hash"],
                      checkpoint["entry_id"])
    digests = {int(b): d for b, d in checkpoint["batch_digests"].items()}
    allocated = {int(p): {int(f): int(c) for f, c in by.items()}
                 for p, by in checkpoint["allocated"].items()}
    differences = list(await audit_ledger_since(session, since))
    differences += await _check_digests(session, digests)
    balances = {code: int(c) for code, c in checkpoint["balances"].items()}
    for code, cents in (await balances_since(session, since)).items():
        balances[code] = balances.get(code, 0) + cents
    differences += await audit_clearing(
        session, digests=digests, allocated_out=allocated,
        after_batch=checkpoint["last_batch_id"], allocated_before=allocated,
        balances=balances)
    ok = not differences
    summary = (f"depuis le point de contrôle du {checkpoint['created_at']:%d/%m/%Y %H:%M} "
               f"(sceau n° {since.sealed_seq}) : "
               + ("journal, chaîne et relevés conformes" if ok
                  else f"{len(differences)} écart(s)"))
    if ok:
        for code, cents in (await balances_since(session, head)).items():
            balances[code] = balances.get(code, 0) - cents
        await record_checkpoint(session, "incremental", head, digests, allocated, balances)
    return AuditResult(ok=ok, differences=differences, summary=summary)


# ------------------------------------------------------------------------------ checkpoints


_STORED_BATCH_STATEMENTS = """
SELECT batch_id, kind, organisation_id, content_hash FROM statement
WHERE batch_id = ANY($1::bigint[])
"""


async def _check_digests(session: AsyncSession, digests: dict[int, str]) -> list[Difference]:
    """Each batch the checkpoint vouches for still holds the statements it replayed (their
    fingerprints, which cover totals and lines), and still exists."""
    raw = await raw_connection(session)
    stored: dict[int, list[str]] = defaultdict(list)
    for batch_id, kind, org, content in await raw.fetch(_STORED_BATCH_STATEMENTS,
                                                        list(digests)):
        stored[batch_id].append(f"{kind};{org};{content}")
    found = []
    for batch_id, digest in sorted(digests.items()):
        now = hashlib.sha256("\n".join(sorted(stored.get(batch_id, []))).encode()).hexdigest()
        if now != digest:
            found.append(Difference(
                "batch_changed_since_checkpoint",
                f"Les relevés du lot {batch_id} ont changé depuis le dernier point de contrôle "
                "de l'audit.", details={"batch_id": batch_id}))
    return found


_LATEST_CHECKPOINT = text("""
SELECT id, created_at, sealed_seq, chain_hash, entry_id, last_batch_id, balances,
       batch_digests, allocated
FROM audit_checkpoint ORDER BY id DESC LIMIT 1
""")


async def latest_checkpoint(session: AsyncSession) -> dict[str, Any] | None:
    row = (await session.execute(_LATEST_CHECKPOINT)).first()
    if row is None:
        return None
    return dict(row._mapping)


async def record_checkpoint(session: AsyncSession, kind: str, head: ChainHead,
                            digests: dict[int, str], allocated: dict[int, dict[int, int]],
                            balances: dict[str, int]) -> None:
    """What a conforming audit verified: the chain up to `head`, each batch's replay digest,
    the replay's allocations after the last batch."""
    await session.execute(text("""
        INSERT INTO audit_checkpoint (kind, sealed_seq, chain_hash, entry_id, last_batch_id,
                                      balances, batch_digests, allocated)
        VALUES (:kind, :seq, :hash, :entry_id, :last_batch, CAST(:balances AS jsonb),
                CAST(:digests AS jsonb), CAST(:allocated AS jsonb))"""), {
        "kind": kind, "seq": head.sealed_seq, "hash": head.hash,
        "last_batch": max(digests, default=0),
        "entry_id": head.entry_id,
        "balances": json.dumps({code: c for code, c in balances.items() if c}),
        "digests": json.dumps({str(b): d for b, d in digests.items()}),
        "allocated": json.dumps({str(p): {str(f): c for f, c in by.items()}
                                 for p, by in allocated.items()}),
    })


# ------------------------------------------------------------------------------ clearing

async def audit_clearing(
        session: AsyncSession, *, digests: dict[int, str] | None = None,
        allocated_out: dict[int, dict[int, int]] | None = None, after_batch: int = 0,
        allocated_before: dict[int, dict[int, int]] | None = None,
        balances: dict[str, int] | None = None, snapshot: Snapshot | None = None,
) -> list[Difference]:
    """Clearing's checks (see the module docstring); an empty list means all agrees. With
    `after_batch`, only the batches after it are replayed (from `allocated_before`) and only
    their statements compared; credit notes, payments and balances are checked in full
    (a few rows per organisation). Given `snapshot` (what the session reads, exported), the
    stored statements' lines are digested in a worker process during the replay."""
    found: list[Difference] = []
    stored_lines = None if snapshot is None else asyncio.ensure_future(
        in_processes(read_at, [(snapshot, _line_digests, after_batch)], processes=1))
    try:
        recomputed, allocated = await replay_batches(
            session, found, after_batch=after_batch, allocated_before=allocated_before,
            digests=digests)
        line_digests = None if stored_lines is None else (await stored_lines)[0]
    finally:
        if stored_lines is not None and not stored_lines.done():
            stored_lines.cancel()
    if allocated_out is not None:
        allocated_out.clear()
        allocated_out.update(allocated)
    recomputed += await _recompute_credit_notes(session, allocated)
    stored = {(r["kind"], r["batch_id"], r["programme_id"], r["organisation_id"]): r
              for r in await _stored_statements(session, after_batch, line_digests)}
    entries = await _entries(session, ("batch:", "credit:", "paid:"))
    if after_batch:
        entries = {k: v for k, v in entries.items() if not _batch_key_up_to(k, after_batch)}
    for statement in recomputed:
        where = (statement.kind, statement.batch_id, statement.programme_id,
                 statement.organisation_id)
        row = stored.pop(where, None)
        if row is None:
            found.append(Difference(
                "statement_missing",
                f"Aucun relevé {_kind(statement.kind)} pour l'organisation "
                f"{statement.organisation_id}{_of(statement)} alors que le recalcul en donne un "
                f"de {statement.gross} centimes.",
                details={"organisation_id": statement.organisation_id,
                         "batch_id": statement.batch_id, "programme_id": statement.programme_id,
                         "recomputed_gross_cents": statement.gross}))
            continue
        found += _compare_statement(row, statement)
        found += _compare_entry(entries.pop(statement.key(), None), statement.key(),
                                statement.postings(), row["id"])
    for row in stored.values():
        found.append(Difference(
            "statement_unexpected",
            f"Le relevé {row['id']} ne correspond à aucun encaissement ni engagement recalculé.",
            details={"statement_id": row["id"], "gross_cents": row["gross_cents"]}))
    found += await _check_payments(session, entries)
    for key in sorted(k for k in entries if not k.startswith("paid:")):
        found.append(Difference(
            "entry_without_statement",
            f"L'écriture {key} ne correspond à aucun relevé recalculé.", details={"key": key}))
    found += await _check_balances(session, balances)
    return found


def _batch_key_up_to(key: str, last_batch: int) -> bool:
    """Whether a `batch:<b>:…` key belongs to a batch the checkpoint vouches for."""
    if not key.startswith("batch:"):
        return False
    number = key.split(":", 2)[1]
    return number.isdigit() and int(number) <= last_batch


def _kind(kind: str) -> str:
    return {"site": "de lieu", "financer": "de financeur", "credit_note": "d'avoir"}[kind]


def _of(statement: Recomputed) -> str:
    if statement.batch_id is not None:
        return f" dans le lot {statement.batch_id}"
    return f" pour le programme {statement.programme_id}"


_CLOSED_PROGRAMMES = text("""
SELECT f.programme_id, f.organisation_id, f.commitment_cents
FROM programme p JOIN programme_financer f ON f.programme_id = p.id
WHERE p.closed_at IS NOT NULL ORDER BY f.programme_id, f.position
""")


async def _recompute_credit_notes(session: AsyncSession,
                                  allocated: dict[int, dict[int, int]]) -> list[Recomputed]:
    out = []
    for pid, fid, commitment in (await session.execute(_CLOSED_PROGRAMMES)).all():
        unused = commitment - allocated.get(pid, {}).get(fid, 0)
        if unused > 0:
            out.append(Recomputed("credit_note", fid, None, pid, unused, 0, unused, 0,
                                   financer_lines_digest([(pid, None, None, 0, unused)])))
    return out


# In each statement, the lines in `financer_lines_digest`'s order (programme, then family and
# commune compared as Python compares strings, by code point: byte order in UTF-8, COLLATE
# "C"), so each is hashed as it comes (OrderedLinesDigest) instead of kept and sorted.
_STORED_LINES = """
SELECT l.statement_id, l.programme_id, l.demarche_family, l.commune_insee,
       l.cheque_count, l.amount_cents
FROM statement s JOIN statement_line l ON l.statement_id = s.id
WHERE s.batch_id IS NULL OR s.batch_id > $1
ORDER BY l.statement_id, l.programme_id, coalesce(l.demarche_family, '') COLLATE "C",
         coalesce(l.commune_insee, '') COLLATE "C"
"""

_STATEMENT_LINES = """
SELECT programme_id, demarche_family, commune_insee, cheque_count, amount_cents
FROM statement_line WHERE statement_id = $1
"""


async def _line_digests(raw: Any, after_batch: int) -> dict[int, tuple[str, int]]:
    """Each stored statement's lines (of the batches after `after_batch`, and of credit
    notes) as their digest and count, streamed: a statement's lines are never all in memory
    (a financer's may be a million: one per programme, démarche family and commune)."""
    digests: dict[int, tuple[str, int]] = {}
    unordered: list[int] = []

    def done(sid: int, digest: OrderedLinesDigest) -> None:
        digests[sid] = (digest.hexdigest(), digest.count)
        if not digest.ordered:
            unordered.append(sid)

    current, digest = None, OrderedLinesDigest()
    cursor = await raw.cursor(_STORED_LINES, after_batch)
    while rows := await cursor.fetch(STREAM_PREFETCH):
        for sid, *line in rows:
            if sid != current:
                if current is not None:
                    done(current, digest)
                current, digest = sid, OrderedLinesDigest()
            digest.add(line)
    if current is not None:
        done(current, digest)
    for sid in unordered:  # should the database's order ever differ: sorted here
        lines = [tuple(r) for r in await raw.fetch(_STATEMENT_LINES, sid)]
        digests[sid] = (financer_lines_digest(lines), len(lines))
    return digests


async def _stored_statements(
        session: AsyncSession, after_batch: int = 0,
        line_digests: dict[int, tuple[str, int]] | None = None) -> list[dict[str, Any]]:
    """The statements of the batches after `after_batch` (all: 0) and every credit note, each
    with its lines' digest and count (`line_digests`, or read here)."""
    rows = (await session.execute(text("""
        SELECT id, kind, batch_id, programme_id, organisation_id, gross_cents, fee_cents,
               net_cents, cheque_count, status, paid_cents, content_hash
        FROM statement WHERE batch_id IS NULL OR batch_id > :after ORDER BY id"""),
        {"after": after_batch})).all()
    if line_digests is None:
        line_digests = await _line_digests(await raw_connection(session), after_batch)
    empty = (financer_lines_digest([]), 0)
    out = []
    for row in rows:
        record = dict(row._mapping)
        record["lines_digest"], record["line_count"] = line_digests.get(record["id"], empty)
        out.append(record)
    return out


_COMPARED = (("gross_cents", "gross", "montant brut"), ("fee_cents", "fee",
             "commission ou frais"), ("net_cents", "net", "montant net"),
             ("cheque_count", "cheques", "nombre de chèques"))


def _compare_statement(row: dict[str, Any], recomputed: Recomputed) -> list[Difference]:
    found = []
    fields = {label: {"stored": row[column], "recomputed": getattr(recomputed, attr)}
              for column, attr, label in _COMPARED
              if row[column] != getattr(recomputed, attr)}
    if recomputed.kind != "site" and row["lines_digest"] != recomputed.lines_digest:
        fields["lignes"] = {"stored": row["line_count"], "recomputed": None}
    if fields:
        found.append(Difference(
            "statement_mismatch",
            f"Le relevé {row['id']} ({_kind(row['kind'])}) diffère du recalcul : "
            + ", ".join(f"{label} {v['stored']} au lieu de {v['recomputed']}"
                        for label, v in fields.items()) + ".",
            details={"statement_id": row["id"], "fields": fields}))
    # The fingerprint printed on the statement must still match the stored row: a row edited
    # after it was issued no longer does (even if the edit was made to look consistent).
    stored_digest = (recomputed.lines_digest if recomputed.kind == "site" else
                     row["lines_digest"])
    as_stored = statement_hash(
        kind=row["kind"], organisation_id=row["organisation_id"], batch_id=row["batch_id"],
        programme_id=row["programme_id"], gross_cents=row["gross_cents"],
        fee_cents=row["fee_cents"], net_cents=row["net_cents"],
        cheque_count=row["cheque_count"], lines_digest=stored_digest)
    if row["content_hash"] != as_stored:
        found.append(Difference(
            "statement_hash_mismatch",
            f"Le relevé {row['id']} a été modifié après son émission : son empreinte ne "
            "correspond plus à son contenu.",
            details={"statement_id": row["id"], "stored": row["content_hash"],
                     "recomputed": as_stored}))
    return found


def _compare_entry(entry: list[tuple[str, int]] | None, key: str,
                   expected: Iterable[tuple[str, int]], statement_id: int) -> list[Difference]:
    if entry is None:
        return [Difference("statement_entry_missing",
                           f"L'écriture {key} du relevé {statement_id} est absente du journal.",
                           details={"statement_id": statement_id, "key": key})]
    if sorted(entry) != sorted(expected):
        return [Difference(
            "statement_entry_mismatch",
            f"L'écriture {key} ne correspond pas au relevé {statement_id} recalculé.",
            details={"statement_id": statement_id, "key": key,
                     "journal": sorted(entry), "recomputed": sorted(expected)})]
    return []


async def _entries(session: AsyncSession,
                   prefixes: Iterable[str]) -> dict[str, list[tuple[str, int]]]:
    """Postings of the journal's entries whose key starts with one of `prefixes`."""
    patterns = [p.replace("%", r"\%").replace("_", r"\_") + "%" for p in prefixes]
    rows = (await session.execute(text("""
        SELECT e.idempotency_key, a.code, p.amount_cents
        FROM ledger_entry e JOIN ledger_posting p ON p.entry_id = e.id
        JOIN ledger_account a ON a.id = p.account_id
        WHERE e.idempotency_key LIKE ANY(CAST(:patterns AS text[]))"""),
        {"patterns": patterns})).all()
    out: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for key, code, amount in rows:
        out[key].append((code, amount))
    return out


async def _check_payments(session: AsyncSession,
                          entries: dict[str, list[tuple[str, int]]]) -> list[Difference]:
    found = []
    rows = (await session.execute(text("""
        SELECT id, kind, organisation_id, status, paid_cents, net_cents FROM statement s
        WHERE kind <> 'credit_note' AND NOT """ + SETTLED_BY_INVOICES + """ ORDER BY id"""))).all()
    for sid, kind, org, status, paid, net in rows:
        key = journal.paid_key(sid)
        entry = entries.pop(key, None)
        if status != "paid":
            if entry is not None:
                found.append(Difference(
                    "payment_without_paid_statement",
                    f"Le journal enregistre le paiement du relevé {sid}, qui n'est pas marqué "
                    "payé.", details={"statement_id": sid, "key": key}))
            continue
        if paid != net:
            found.append(Difference(
                "payment_amount_mismatch",
                f"Le relevé {sid} est marqué payé pour {paid} centimes au lieu de {net}.",
                details={"statement_id": sid, "paid_cents": paid, "net_cents": net}))
        expected = (journal.financer_paid(org, paid) if kind == "financer"
                    else journal.site_paid(org, paid))
        found += _compare_entry(entry, key, expected, sid)
    for key in sorted(k for k in entries if k.startswith("paid:")):
        found.append(Difference("entry_without_statement",
                                f"L'écriture {key} ne correspond à aucun relevé.",
                                details={"key": key}))
        entries.pop(key)
    return found


_EXPECTED_BALANCES = text("""
SELECT format('site:%s:payable', site_id), CAST(sum(value_cents) AS bigint) FROM redemption
WHERE batch_id IS NULL AND reversed_at IS NULL GROUP BY site_id
UNION ALL
SELECT format('site:%s:payout', organisation_id), CAST(sum(net_cents) AS bigint)
FROM statement
WHERE kind = 'site' AND status <> 'paid' GROUP BY organisation_id
UNION ALL
SELECT format('financer:%s:receivable', organisation_id), -CAST(sum(net_cents) AS bigint)
FROM statement WHERE kind = 'financer' AND status <> 'paid' GROUP BY organisation_id
UNION ALL
""" + RECEIVABLE_FROM_INVOICES)

# (`\:` keeps SQLAlchemy from reading ":payable" as a bind parameter.)
_ACTUAL_BALANCES = text(r"""
SELECT a.code, CAST(coalesce(sum(p.amount_cents), 0) AS bigint)
FROM ledger_account a LEFT JOIN ledger_posting p ON p.account_id = a.id
WHERE a.code LIKE 'site\:%\:payable' OR a.code LIKE 'site\:%\:payout'
   OR a.code LIKE 'financer\:%\:receivable'
GROUP BY a.code
""")

_ACCOUNT_LABEL = {"payable": "encaissements à compenser", "payout": "montant à verser",
                  "receivable": "montant à recevoir"}


# What the entries after a checkpoint (sealed after its seal, or not sealed yet and written
# after its last entry) posted on the accounts _check_balances compares.
_BALANCES_SINCE = text(r"""
WITH since AS (
    SELECT entry_id FROM ledger_seal WHERE sealed_seq > :seq
    UNION
    SELECT e.id FROM ledger_entry e
    WHERE e.id > :entry_id AND NOT EXISTS (SELECT 1 FROM ledger_seal s WHERE s.entry_id = e.id)
)
SELECT a.code, CAST(sum(p.amount_cents) AS bigint)
FROM since JOIN ledger_posting p ON p.entry_id = since.entry_id
JOIN ledger_account a ON a.id = p.account_id
WHERE a.code LIKE 'site\:%\:payable' OR a.code LIKE 'site\:%\:payout'
   OR a.code LIKE 'financer\:%\:receivable'
GROUP BY a.code
""")


async def balances_since(session: AsyncSession, head: ChainHead) -> dict[str, int]:
    rows = await session.execute(_BALANCES_SINCE, {"seq": head.sealed_seq,
                                                   "entry_id": head.entry_id})
    return {code: int(cents) for code, cents in rows.all()}


async def _check_balances(session: AsyncSession,
                          actual: dict[str, int] | None = None) -> list[Difference]:
    """Each site's and financer's balances against the redemptions and statements; `actual`
    (the balances as a checkpoint and what came after give them), or summed from every
    posting. Fills `actual` when given empty."""
    expected: dict[str, int] = defaultdict(int)
    for code, cents in (await session.execute(_EXPECTED_BALANCES)).all():
        expected[code] += cents
    if actual is None or not actual:
        summed = {code: cents for code, cents in (await session.execute(_ACTUAL_BALANCES)).all()}
        if actual is None:
            actual = summed
        else:
            actual.update(summed)
    found = []
    for code in sorted(expected.keys() | actual.keys()):
        want, have = expected.get(code, 0), actual.get(code, 0)
        if want != have:
            found.append(Difference(
                "account_balance_mismatch",
                f"Le compte {code} ({_ACCOUNT_LABEL[code.rsplit(':', 1)[1]]}) a un solde de "
                f"{have} centimes au journal ; les encaissements et relevés donnent {want}.",
                account=code, details={"journal": have, "recomputed": want}))
    return found
