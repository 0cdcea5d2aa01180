"""Statements (relevés) as JSON, CSV and PDF, scoped: a financer or a site reads its own, the
operator all; another's statement is a 404. The operator records bank transfers."""

from __future__ import annotations

from fastapi import APIRouter, Response

from api.deps import OperatorAdmin, SessionDep, SettingsDep, StatementReader
from api.security import Principal
from clearing import invoices, payments, statements
from clearing.export import Issuer, ToPay, statement_csv, statement_pdf
from clearing.schemas import StatementRead, StatementSummary, TransferRecord
from kit.clock import utcnow
from pass_.enums import Role

router = APIRouter(prefix="/api/v1", tags=["relevés"])


def scope(principal: Principal) -> int | None:
    """Whose statements `principal` may read: None for the operator (all)."""
    return None if principal.role == Role.operator_admin else principal.organisation_id


@router.get("/statements", response_model=list[StatementSummary])
async def list_statements(principal: StatementReader, session: SessionDep,
                          batch_id: int | None = None) -> list[StatementSummary]:
    return await statements.list_statements(session, organisation_id=scope(principal),
                                            batch_id=batch_id)


# The file routes come first: "/statements/{id}" would otherwise take "12.csv" as an id.
@router.get("/statements/{statement_id}.csv")
async def statement_as_csv(statement_id: int, principal: StatementReader,
                           session: SessionDep) -> Response:
    found = await statements.get_statement(session, statement_id,
                                           organisation_id=scope(principal))
    cheques = (await invoices.statement_cheques(session, batch_id=found.batch_id,
                                                financer_id=found.organisation_id)
               if found.kind == "financer" and found.batch_id is not None else None)
    return Response(statement_csv(found, cheques=cheques),
                    media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="releve-{statement_id}.csv"'})


@router.get("/statements/{statement_id}.pdf")
async def statement_as_pdf(statement_id: int, principal: StatementReader,
                           session: SessionDep, settings: SettingsDep) -> Response:
    found = await statements.get_statement(session, statement_id,
                                           organisation_id=scope(principal))
    operator = await statements.operator_party(session)
    issuer = Issuer(name=operator.name if operator else settings.operator_name,
                    siret=operator.siret if operator else None,
                    address=operator.address if operator else None,
                    iban=settings.operator_iban, bic=settings.operator_bic)
    to_pay = [ToPay(number=i.number, total_cents=i.total_cents, due_date=i.due_date,
                    reference=i.payment_reference, iban=i.seller["iban"],
                    bic=i.seller.get("bic"))
              for i in await invoices.statement_invoices(session, statement_id)
              if i.type_code == "380" and i.status != "paid"]
    return Response(statement_pdf(found, issuer=issuer, generated_at=utcnow(),
                                  to_pay=to_pay),
                    media_type="application/pdf", headers={
                        "Content-Disposition": f'inline; filename="releve-{statement_id}.pdf"'})


@router.get("/statements/{statement_id}", response_model=StatementRead)
async def get_statement(statement_id: int, principal: StatementReader,
                        session: SessionDep) -> StatementRead:
    return await statements.get_statement(session, statement_id,
                                          organisation_id=scope(principal))


@router.post("/statements/{statement_id}/transfer", response_model=StatementSummary)
async def record_transfer(statement_id: int, data: TransferRecord, _: OperatorAdmin,
                          session: SessionDep) -> StatementSummary:
    """Record a bank transfer by its reference: received from a financer, or sent to a site."""
    await payments.record_transfer(session, statement_id=statement_id,
                                   reference=data.reference, amount_cents=data.amount_cents,
                                   received_on=data.received_on, now=utcnow())
    return await statements.visible_statement(session, statement_id, organisation_id=None)
