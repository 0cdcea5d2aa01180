"""Data protection on request (RGPD art. 15, 17, 20): a beneficiary's issuer exports or erases
their record (pass_/personal_data.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from api.deps import IssuerAgent, SessionDep
from kit.clock import utcnow
from kit.errors import InvalidInput
from pass_ import personal_data
from pass_.schemas import BeneficiaryRead

router = APIRouter(prefix="/api/v1", tags=["bénéficiaires"])


class ErasureRequest(BaseModel):
    """`confirm: true` is required: an erasure cannot be undone."""

    model_config = ConfigDict(extra="forbid")

    confirm: bool = False


class ErasureNotConfirmed(InvalidInput):
    code = "confirmation_required"
    message = ("L'effacement est définitif : confirmez-le explicitement (« confirm »: true).")


@router.get("/beneficiaries/{beneficiary_id}/export")
async def export_beneficiary(beneficiary_id: int, principal: IssuerAgent,
                             session: SessionDep) -> dict[str, Any]:
    """Everything held about the beneficiary (record, booklets, cheques and where they were
    used): the answer to an access or portability request."""
    return await personal_data.export_beneficiary(
        session, issuer_id=principal.organisation_id, beneficiary_id=beneficiary_id)


@router.post("/beneficiaries/{beneficiary_id}/erase", response_model=BeneficiaryRead)
async def erase_beneficiary(beneficiary_id: int, data: ErasureRequest, principal: IssuerAgent,
                            session: SessionDep) -> BeneficiaryRead:
    """Erase the record on request: reference, birth year and commune dropped; cheques and money
    kept. Requires `confirm: true`."""
    if not data.confirm:
        raise ErasureNotConfirmed()
    person = await personal_data.erase_beneficiary(
        session, issuer_id=principal.organisation_id, beneficiary_id=beneficiary_id,
        now=utcnow())
    return BeneficiaryRead.model_validate(person)
