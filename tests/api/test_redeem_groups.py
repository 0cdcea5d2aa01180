"""Online scans that arrive together are written together (api/redeem_online.py): one
transaction, each scan answered as if it were alone — its redemption or its refusal, its
stored answer, a deactivated account refused alone — and a group that fails fails whole.

The group is made deterministic by holding the worker's only writing slot while the scans
arrive (`_running`), then freeing it: the first waiting scan leads a group of all of them.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.redeem_online import RedeemGroups
from pass_ import redemption as svc
from tests.api.test_redemption_roads import committed, db, redeem, scalar

__all__ = ["db"]  # the fixture, imported for these tests


async def _together(app: Any, *requests: Any) -> list[httpx.Response]:
    """Send the requests while the only slot is held, then free it: they form one group."""
    groups = RedeemGroups(max_running=1)
    app.state.redeem_groups = groups
    groups._running = 1  # as if a group were being written
    sent = [asyncio.ensure_future(r) for r in requests]
    while len(groups._waiting) < len(requests):  # noqa: ASYNC110 (a private list: no event)
        await asyncio.sleep(0.01)
    groups._running = 0
    async with groups._turn:
        groups._turn.notify_all()
    return list(await asyncio.gather(*sent))


async def test_scans_arriving_together_are_one_transaction_each_with_its_own_answer(
    sessionmaker: async_sessionmaker[AsyncSession], app: Any,
    committed_client: httpx.AsyncClient, db: AsyncSession,
) -> None:
    scene, (a, b, gone) = await committed(sessionmaker, app, 3, sites=3)
    await db.execute(text("UPDATE app_user SET is_active = false WHERE id = :id"),
                     {"id": gone.id})
    await db.commit()
    key, gone_key = str(uuid.uuid4()), str(uuid.uuid4())
    first, second = scene.cheques[0], scene.cheques[1]

    answers = await _together(
        app,
        redeem(committed_client, a, first.token, key),
        redeem(committed_client, a, first.token, key),  # the same request again: replayed
        redeem(committed_client, b, first.serial),  # the same cheque elsewhere: refused
        redeem(committed_client, b, second.token),
        redeem(committed_client, gone, scene.cheques[2].token, gone_key),
        redeem(committed_client, a, "ABC"),  # not a code: refused before the database
    )

    statuses = [r.status_code for r in answers]
    assert statuses == [201, 201, 409, 201, 401, 422], [r.text for r in answers]
    assert answers[0].content == answers[1].content
    assert "Idempotent-Replayed" not in answers[0].headers
    assert answers[1].headers["Idempotent-Replayed"] == "true"
    assert answers[2].json()["error"]["code"] == "cheque_already_redeemed"
    assert answers[4].json()["error"]["code"] == "unauthenticated"
    # One transaction wrote both redemptions and every answer stored.
    assert await scalar(db, "SELECT count(DISTINCT xmin::text) FROM redemption "
                        "WHERE cheque_id = ANY(:ids)", ids=[first.id, second.id]) == 1
    assert await scalar(db, "SELECT count(*) FROM redemption WHERE cheque_id = ANY(:ids)",
                        ids=[first.id, second.id]) == 2
    assert await scalar(db, "SELECT count(*) FROM idempotency_record WHERE user_id = ANY(:u)",
                        u=[a.id, b.id]) == 4
    # The deactivated account's scan: nothing written, its key still free.
    assert await scalar(db, "SELECT status FROM cheque WHERE id = :id",
                        id=scene.cheques[2].id) == "active"
    assert await scalar(db, "SELECT count(*) FROM idempotency_record WHERE user_id = :u",
                        u=gone.id) == 0


async def test_a_group_that_fails_fails_whole_with_nothing_written_and_keys_free(
    sessionmaker: async_sessionmaker[AsyncSession], app: Any,
    committed_client: httpx.AsyncClient, db: AsyncSession, monkeypatch: pytest.MonkeyPatch,
) -> None:
    scene, (a, b) = await committed(sessionmaker, app, 2, sites=2)
    real = svc.redeem_online

    async def breaks_after_writing(session: AsyncSession, **kwargs: Any) -> Any:
        await real(session, **kwargs)  # the redemptions written, then the unexpected
        raise RuntimeError("disk full")

    monkeypatch.setattr(svc, "redeem_online", breaks_after_writing)
    keys = [str(uuid.uuid4()), str(uuid.uuid4())]

    answers = await _together(
        app,
        redeem(committed_client, a, scene.cheques[0].token, keys[0]),
        redeem(committed_client, b, scene.cheques[1].token, keys[1]),
    )

    assert [r.status_code for r in answers] == [500, 500]
    assert await scalar(db, "SELECT count(*) FROM redemption WHERE cheque_id = ANY(:ids)",
                        ids=[c.id for c in scene.cheques]) == 0
    assert await scalar(db, "SELECT count(*) FROM idempotency_record WHERE key = ANY(:k)",
                        k=keys) == 0
    monkeypatch.setattr(svc, "redeem_online", real)
    retried = await redeem(committed_client, a, scene.cheques[0].token, keys[0])
    assert retried.status_code == 201, retried.text
