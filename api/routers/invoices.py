"""Invoices, their Factur-X PDF, bank statements and the buyer references of a financer's
participation (issue 14). A financer reads its own invoices; the operator reads all, imports
bank statements and edits participations."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Response, UploadFile

from api.deps import OperatorAdmin, SessionDep, require
from api.security import Principal
from clearing import bank, invoices
from clearing.invoices_facturx import facturx_pdf
from kit.clock import utcnow
from pass_.enums import Role
from pass_.participation import Participation, ParticipationUpdate, update_participation

router = APIRouter(prefix="/api/v1", tags=["factures"])

InvoiceReader = Annotated[Principal, Depends(require(Role.operator_admin, Role.financer))]


def _scope(principal: Principal) -> int | None:
    return None if principal.role == Role.operator_admin else principal.organisation_id


@router.get("/invoices", response_model=list[invoices.InvoiceRead])
async def list_invoices(principal: InvoiceReader, session: SessionDep,
                        batch_id: int | None = None,
                        financer_id: int | None = None) -> list[invoices.InvoiceDetail]:
    """Invoices (380) and credit notes (381), newest first; a financer sees only its own."""
    scope = _scope(principal)
    if scope is not None and financer_id not in (None, scope):
        return []
    return await invoices.list_invoices(session, financer_id=scope or financer_id,
                                        batch_id=batch_id)


@router.get("/invoices/{invoice_id}.pdf", response_class=Response,
            responses={200: {"content": {"application/pdf": {}},
                             "description": "La facture Factur-X (PDF/A-3, EN 16931)"}})
async def invoice_pdf(invoice_id: int, principal: InvoiceReader,
                      session: SessionDep) -> Response:
    found = await invoices.get_invoice(session, invoice_id, financer_id=_scope(principal))
    pdf = facturx_pdf(found, await invoices.cheque_rows(session, found))
    return Response(pdf, media_type="application/pdf", headers={
        "Content-Disposition": f'attachment; filename="{found.number}.pdf"'})


@router.post("/bank-statements", response_model=bank.ImportResult)
async def import_bank_statement(principal: OperatorAdmin, session: SessionDep,
                                file: Annotated[UploadFile, File(
                                    description="Relevé camt.053 ou camt.054 (XML)")],
                                ) -> bank.ImportResult:
    """Import the bank's statement and reconcile its credits with the invoices; the same
    file again changes nothing (`already_imported`)."""
    data = await file.read(bank.MAX_FILE_BYTES + 1)
    return await bank.import_statement(session, data, filename=file.filename,
                                       imported_by=principal.user_id, now=utcnow())


@router.post("/bank-lines/{line_id}/confirm")
async def confirm_bank_line(line_id: int, _: OperatorAdmin,
                            session: SessionDep) -> dict[str, int]:
    """Confirm a suggested match (amount and payer IBAN, no reference): the invoice is paid."""
    invoice_id = await bank.confirm_suggestion(session, bank_line_id=line_id, now=utcnow())
    return {"bank_line_id": line_id, "invoice_id": invoice_id}


@router.patch("/programmes/{programme_id}/financers/{organisation_id}",
              response_model=Participation)
async def patch_participation(programme_id: int, organisation_id: int,
                              data: ParticipationUpdate, _: OperatorAdmin,
                              session: SessionDep) -> Participation:
    """The buyer references of a financer in a programme, printed on its next invoices."""
    return await update_participation(session, programme_id=programme_id,
                                      organisation_id=organisation_id, data=data)
