"""Online redemptions, grouped: the scans a worker receives while it is writing others go to the
database together — one transaction, one call of `pass_redeem` for all of them.

A thin layer with no rule of its own: each scan's rules are `pass_redeem`'s (through
`pass_.redemption.redeem_online`), each answer's are `api.idempotency.run_many`'s (per user and
key), each account's are `api.deps.inactive_accounts`'. What it decides is only *when*: a scan
that arrives while fewer than `MAX_RUNNING` groups of its worker are being written (one) starts
a group with every scan waiting, on its own request's session; the others wait for their
answer.

- Alone (no load), a scan is a group of one, and its request's transaction commits as any
  other's, right after the route returns (api.deps.get_session).
- A group of several commits before answering any of them: no scan is answered before what it
  says is durable.
- A group that fails (an unexpected error, a failed commit) fails all its scans with nothing
  written and no answer stored, so each client may retry under its key.
- An account deactivated since its token was signed: that scan is refused (401), the others go
  on.

Why: a scan costs PostgreSQL a transaction and five statements of its own around the call that
decides (account, key reserved, answer recorded, begin, commit), and the call itself costs
about the same for one scan as for a few (set-based); grouped, a busy worker pays them once
per group (bench/redemption.py measures both).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from api import idempotency
from api.deps import NOT_ACTIVE, Unauthenticated, inactive_accounts
from api.idempotency import Answer
from api.security import Principal
from kit.clock import utcnow
from kit.errors import DomainError
from pass_ import redemption
from pass_.redemption import OnlineScanIn

# Groups a worker writes at once. One: while it is written, the next gathers every scan that
# arrives meanwhile. Measured with bench/redemption.py (32 connections, 2 workers, same
# machine, alternated): 1 → 1,289 redemptions/s, p99 41 ms; 2 → 1,031–1,066/s, p99 59–60 ms;
# 4 → 812/s, p99 67 ms — more slots spread the same scans over more, smaller transactions.
# The price: a group waiting on a row lock (a cheque another transaction is deciding) holds
# this worker's next scans meanwhile; the other workers go on.
MAX_RUNNING = 1


@dataclass(eq=False, slots=True)
class _Scan:
    principal: Principal
    request: idempotency.Request
    scan: OnlineScanIn
    answer: asyncio.Future[tuple[Answer, bool]]
    taken: bool = field(default=False)


class RedeemGroups:
    """One per worker process (`app.state.redeem_groups`)."""

    def __init__(self, max_running: int = MAX_RUNNING) -> None:
        self._waiting: list[_Scan] = []
        self._running = 0
        self._max = max_running
        self._turn = asyncio.Condition()

    async def answer(
        self, session: AsyncSession, keyring: Any, scan: _Scan
    ) -> tuple[Answer, bool]:
        self._waiting.append(scan)
        while not scan.answer.done():
            if not scan.taken and self._running < self._max:
                await self._lead(session, keyring, scan)
            else:
                async with self._turn:
                    await self._turn.wait_for(lambda: scan.answer.done() or (
                        not scan.taken and self._running < self._max))
        return scan.answer.result()

    async def _lead(self, session: AsyncSession, keyring: Any, own: _Scan) -> None:
        group, self._waiting = self._waiting, []
        for scan in group:
            scan.taken = True
        self._running += 1
        try:
            await _write(session, keyring, group)
        except Exception as exc:  # every scan of the group fails with it (own: in `answer`)
            for scan in group:
                if not scan.answer.done():
                    scan.answer.set_exception(exc)
        except BaseException:  # the leader's request cancelled: the others fail, it stops
            for scan in group:
                if scan is not own and not scan.answer.done():
                    scan.answer.set_exception(RuntimeError("scan group cancelled"))
            own.answer.cancel()
            raise
        finally:
            self._running -= 1
            async with self._turn:
                self._turn.notify_all()


async def _write(session: AsyncSession, keyring: Any, group: list[_Scan]) -> None:
    """One group in the leader's transaction: accounts, keys, the scans, the answers."""
    inactive = await inactive_accounts(session, [s.principal for s in group])
    live = [s for s in group if s.principal.user_id not in inactive]
    now = utcnow()

    async def work(fresh: list[int]) -> list[Answer]:
        results = await redemption.redeem_online(
            session, keyring=keyring, now=now, scans=[live[n].scan for n in fresh])
        return [idempotency.answer_of_error(r) if isinstance(r, DomainError)
                else Answer.of(201, r.model_dump(mode="json")) for r in results]

    answered = await idempotency.run_many(session, [s.request for s in live], work)
    if len(group) > 1:  # alone, the leader's request commits it (api.deps.get_session)
        await session.commit()
    for scan in group:
        if scan.principal.user_id in inactive:
            scan.answer.set_exception(Unauthenticated(NOT_ACTIVE))
    for scan, result in zip(live, answered, strict=True):
        scan.answer.set_result(result)


async def redeem(
    request: Request, session: AsyncSession, principal: Principal, *, key: str,
    fingerprint: str, scan: OnlineScanIn,
) -> tuple[Answer, bool]:
    """Redeem one online scan (API or scan page): its answer, and whether it was replayed."""
    groups: RedeemGroups = request.app.state.redeem_groups
    waiting = _Scan(principal, idempotency.Request(principal.user_id, key, fingerprint), scan,
                    asyncio.get_running_loop().create_future())
    return await groups.answer(session, request.app.state.keyring, waiting)
