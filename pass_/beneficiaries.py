"""Beneficiaries: pseudonymous records seen only by their issuer, pseudonymised after retention.

A beneficiary is a reference chosen by the agent (no name needed), a need level and optionally a
birth year and a commune (DESIGN.md §5, §8). Another issuer's beneficiary answers NotFound, so
ids cannot be probed.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from kit.errors import Conflict, NotFound
from pass_.models import Beneficiary
from pass_.schemas import BeneficiaryCreate

MAX_SEARCH_RESULTS = 20


class BeneficiaryExists(Conflict):
    code = "beneficiary_exists"
    message = "Votre structure a déjà un bénéficiaire avec cette référence."


async def create_beneficiary(
    session: AsyncSession, *, issuer_id: int, data: BeneficiaryCreate
) -> Beneficiary:
    beneficiary = Beneficiary(
        issuer_id=issuer_id,
        reference=data.reference,
        need_level=int(data.need_level),
        birth_year=data.birth_year,
        commune_insee=data.commune_insee,
    )
    try:
        # A savepoint, so the unique reference per issuer refuses a duplicate cleanly even
        # when two agents type the same reference at the same moment (the refused object
        # leaves the session with the savepoint).
        async with session.begin_nested():
            session.add(beneficiary)
            await session.flush()
    except IntegrityError:
        raise BeneficiaryExists(reference=data.reference) from None
    return beneficiary


async def get_beneficiary(
    session: AsyncSession, *, issuer_id: int, beneficiary_id: int
) -> Beneficiary:
    beneficiary = await session.get(Beneficiary, beneficiary_id)
    if beneficiary is None or beneficiary.issuer_id != issuer_id:
        raise NotFound("Bénéficiaire introuvable.", beneficiary_id=beneficiary_id)
    return beneficiary


def _like_prefix(text_: str) -> str:
    escaped = text_.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.lower() + "%"


async def find_beneficiaries(
    session: AsyncSession, *, issuer_id: int, reference: str
) -> list[Beneficiary]:
    """The issuer's beneficiaries whose reference starts with `reference` (any case), the exact
    match first; at most 20."""
    wanted = " ".join(reference.split())
    if not wanted:
        return []
    stmt = (
        select(Beneficiary)
        .where(
            col(Beneficiary.issuer_id) == issuer_id,
            func.lower(col(Beneficiary.reference)).like(_like_prefix(wanted), escape="\\"),
        )
        .order_by(
            (func.lower(col(Beneficiary.reference)) != wanted.lower()),
            col(Beneficiary.reference),
            col(Beneficiary.id),
        )
        .limit(MAX_SEARCH_RESULTS)
    )
    return list((await session.scalars(stmt)).all())


async def pseudonymise_beneficiaries(
    session: AsyncSession, *, now: datetime, retention_days: int
) -> int:
    """Clear the reference of every beneficiary whose last booklet (or, without booklet, whose
    record) is older than `retention_days`; returns how many were pseudonymised. Statistics
    (need level, birth year, commune) and the booklets stay."""
    if retention_days < 0:
        raise ValueError("retention_days must be non-negative")
    cutoff = now - timedelta(days=retention_days)
    stmt = (
        update(Beneficiary)
        .where(
            col(Beneficiary.reference).is_not(None),
            func.coalesce(col(Beneficiary.last_booklet_at), col(Beneficiary.created_at)) < cutoff,
        )
        .values(reference=None, pseudonymised_at=now)
        # "fetch": beneficiaries already loaded in this session lose their reference too.
        .execution_options(synchronize_session="fetch")
    )
    result = await session.execute(stmt)
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
