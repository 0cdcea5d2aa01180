"""Booklets of an issuer: issuance at the desk, hand-out from stock, cancellation, history and
printable PDF (DESIGN.md §5, §7). `{booklet}` is the id or the printed number (CN-XXXX-XXXX)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from api.deps import IssuerAgent, SessionDep
from kit.clock import utcnow
from pass_ import booklet_print, issuance
from pass_.enums import BookletStatus
from pass_.programmes import Actor
from pass_.schemas import BookletCancel, BookletCreate, BookletPage, BookletRead, HandOut

router = APIRouter(prefix="/api/v1", tags=["carnets"])


@router.post("/booklets", status_code=201, response_model=BookletRead)
async def issue_booklet(
    data: BookletCreate, principal: IssuerAgent, session: SessionDep, request: Request
) -> BookletRead:
    return await issuance.issue_booklet(
        session,
        keyring=request.app.state.keyring,
        actor=Actor.of(principal),
        programme_id=data.programme_id,
        beneficiary_id=data.beneficiary_id,
        size=data.size,
        now=utcnow(),
    )


@router.get("/booklets", response_model=BookletPage)
async def list_booklets(
    principal: IssuerAgent,
    session: SessionDep,
    number: Annotated[str | None, Query(max_length=40)] = None,
    status: BookletStatus | None = None,
    programme_id: int | None = None,
    beneficiary_id: int | None = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=200)] = 50,
) -> BookletPage:
    return await issuance.list_booklets(
        session,
        actor=Actor.of(principal),
        page=page,
        per_page=per_page,
        number=number,
        status=status,
        programme_id=programme_id,
        beneficiary_id=beneficiary_id,
    )


@router.get("/booklets/{booklet}", response_model=BookletRead)
async def get_booklet(booklet: str, principal: IssuerAgent, session: SessionDep) -> BookletRead:
    return await issuance.get_booklet(session, actor=Actor.of(principal), ref=booklet)


@router.get("/booklets/{booklet}/pdf", response_class=Response)
async def booklet_pdf(
    booklet: str, principal: IssuerAgent, session: SessionDep, request: Request
) -> Response:
    content = await booklet_print.booklet_pdf(
        session,
        actor=Actor.of(principal),
        ref=booklet,
        public_url=request.app.state.settings.public_url,
    )
    return Response(
        content,
        media_type="application/pdf",
        headers={"Content-Disposition": 'inline; filename="carnet.pdf"'},
    )


@router.post("/booklets/{booklet}/hand-out", response_model=BookletRead)
async def hand_out(
    booklet: str, data: HandOut, principal: IssuerAgent, session: SessionDep, request: Request
) -> BookletRead:
    return await issuance.hand_out(
        session,
        actor=Actor.of(principal),
        ref=booklet,
        beneficiary_id=data.beneficiary_id,
        now=utcnow(),
        hand_out_stop_days=request.app.state.settings.hand_out_stop_days,
    )


@router.post("/booklets/{booklet}/cancel", response_model=BookletRead)
async def cancel_booklet(
    booklet: str, data: BookletCancel, principal: IssuerAgent, session: SessionDep
) -> BookletRead:
    return await issuance.cancel_booklet(
        session, actor=Actor.of(principal), ref=booklet, reason=data.reason, now=utcnow()
    )
