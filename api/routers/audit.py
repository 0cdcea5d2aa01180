"""The operator's audit endpoint (DESIGN.md §8)."""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter, Query

from api.deps import OperatorAdmin, SessionDep
from clearing.audit import run_audit, run_incremental_audit

router = APIRouter(prefix="/api/v1", tags=["audit"])


@router.get("/audit")
async def audit(
    _: OperatorAdmin, session: SessionDep, incremental: bool = Query(False)
) -> dict[str, Any]:
    """L'audit complet, ou (`incremental=true`) ce qui suit le dernier point de contrôle."""
    result = await (run_incremental_audit if incremental else run_audit)(session)
    return {
        "ok": result.ok,
        "summary": result.summary,
        "differences": [
            dataclasses.asdict(d) if dataclasses.is_dataclass(d) else d for d in result.differences
        ],
    }
