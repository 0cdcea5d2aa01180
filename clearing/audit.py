"""The audit of DESIGN.md §8: everything recomputed from the journal, each difference listed.

`run_audit` gathers the ledger's own checks (balance of every entry, hash chain) and the checks
of the domains above it (cheques, statements), so `passnum audit` and `GET /api/v1/audit` see one
report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ledger.audit import audit_ledger
from sqlalchemy.ext.asyncio import AsyncSession


@dataclass
class AuditResult:
    ok: bool
    differences: list[Any] = field(default_factory=list)
    summary: str = ""


async def run_audit(session: AsyncSession) -> AuditResult:
    differences = list(await audit_ledger(session))
    ok = not differences
    summary = (
        "journal équilibré, chaîne de hachage intègre" if ok else f"{len(differences)} écart(s)"
    )
    return AuditResult(ok=ok, differences=differences, summary=summary)
