"""Programmes (creation by the operator, scoped reading with live figures) and bulk orders of
booklets printed ahead, with their print-ready PDF (DESIGN.md §5, §7)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from api.deps import CurrentUser, IssuerOrOperator, OperatorAdmin, SessionDep
from kit.clock import paris_today, utcnow
from pass_ import booklet_print, issuance, programmes
from pass_.programmes import Actor
from pass_.schemas import OrderCreate, OrderRead, ProgrammeCreate, ProgrammeDetail, ProgrammeRead

router = APIRouter(prefix="/api/v1", tags=["programmes"])


@router.post("/programmes", status_code=201, response_model=ProgrammeDetail)
async def create_programme(
    data: ProgrammeCreate, _: OperatorAdmin, session: SessionDep
) -> ProgrammeDetail:
    programme = await programmes.create_programme(session, data, today=paris_today())
    return await programmes.programme_detail(session, programme)


@router.get("/programmes", response_model=list[ProgrammeRead])
async def list_programmes(principal: CurrentUser, session: SessionDep) -> list[ProgrammeRead]:
    found = await programmes.list_programmes(session, Actor.of(principal))
    return [ProgrammeRead.model_validate(p) for p in found]


@router.get("/programmes/{programme_id}", response_model=ProgrammeDetail)
async def get_programme(
    programme_id: int, principal: CurrentUser, session: SessionDep
) -> ProgrammeDetail:
    programme = await programmes.visible_programme(session, programme_id, Actor.of(principal))
    return await programmes.programme_detail(session, programme)


@router.post("/programmes/{programme_id}/orders", status_code=201, response_model=OrderRead)
async def order_booklets(
    programme_id: int,
    data: OrderCreate,
    principal: IssuerOrOperator,
    session: SessionDep,
    request: Request,
) -> OrderRead:
    return await issuance.order_booklets(
        session,
        keyring=request.app.state.keyring,
        actor=Actor.of(principal),
        programme_id=programme_id,
        issuer_id=data.issuer_id,
        booklets=data.booklets,
        size=data.size,
        now=utcnow(),
    )


@router.get("/orders/{order_id}", response_model=OrderRead)
async def get_order(order_id: int, principal: IssuerOrOperator, session: SessionDep) -> OrderRead:
    return await issuance.get_order(session, actor=Actor.of(principal), order_id=order_id)


@router.get("/orders/{order_id}/pdf", response_class=Response)
async def order_pdf(
    order_id: int, principal: IssuerOrOperator, session: SessionDep, request: Request
) -> Response:
    content = await booklet_print.order_pdf(
        session,
        actor=Actor.of(principal),
        order_id=order_id,
        public_url=request.app.state.settings.public_url,
    )
    return Response(
        content,
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="commande-{order_id}.pdf"'},
    )
