"""A clearing batch's SEPA transfer file as an HTTP download, the same from the API and the page."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from clearing import payments
from clearing.errors import NothingToTransfer
from clearing.sepa import Party
from kit.clock import paris_today, utcnow
from kit.settings import Settings


def operator_account(settings: Settings) -> Party:
    """The operator's account, debited by the SEPA files."""
    return Party(settings.operator_name, settings.operator_iban, settings.operator_bic)


async def batch_sepa_download(
    session: AsyncSession, settings: Settings, *, batch_id: int
) -> Response:
    """The pain.001.001.03 file paying the batch's unpaid site statements, as an attachment
    (sites with missing or invalid bank details are held); NothingToTransfer if it pays none."""
    built = await payments.batch_sepa_file(
        session,
        batch_id=batch_id,
        debtor=operator_account(settings),
        today=paris_today(),
        now=utcnow(),
    )
    if built.xml is None:
        raise NothingToTransfer(batch_id=batch_id, held=len(built.held))
    return Response(
        built.xml,
        media_type="application/xml",
        headers={
            "Content-Disposition": f'attachment; filename="passnum-lot-{batch_id}-sepa.xml"',
            "X-Transfers": str(built.count),
            "X-Total-Cents": str(built.total_cents),
            "X-Held": str(len(built.held)),
        },
    )
