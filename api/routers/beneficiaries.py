"""Beneficiaries, seen only by their issuer's agents (DESIGN.md §5, §8)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import IssuerAgent, SessionDep
from pass_ import beneficiaries
from pass_.schemas import BeneficiaryCreate, BeneficiaryRead

router = APIRouter(prefix="/api/v1", tags=["bénéficiaires"])


@router.post("/beneficiaries", status_code=201, response_model=BeneficiaryRead)
async def create_beneficiary(
    data: BeneficiaryCreate, principal: IssuerAgent, session: SessionDep
) -> BeneficiaryRead:
    beneficiary = await beneficiaries.create_beneficiary(
        session, issuer_id=principal.organisation_id, data=data
    )
    return BeneficiaryRead.model_validate(beneficiary)


@router.get("/beneficiaries", response_model=list[BeneficiaryRead])
async def find_beneficiaries(
    principal: IssuerAgent,
    session: SessionDep,
    reference: Annotated[str, Query(min_length=1, max_length=64)],
) -> list[BeneficiaryRead]:
    found = await beneficiaries.find_beneficiaries(
        session, issuer_id=principal.organisation_id, reference=reference
    )
    return [BeneficiaryRead.model_validate(b) for b in found]


@router.get("/beneficiaries/{beneficiary_id}", response_model=BeneficiaryRead)
async def get_beneficiary(
    beneficiary_id: int, principal: IssuerAgent, session: SessionDep
) -> BeneficiaryRead:
    beneficiary = await beneficiaries.get_beneficiary(
        session, issuer_id=principal.organisation_id, beneficiary_id=beneficiary_id
    )
    return BeneficiaryRead.model_validate(beneficiary)
