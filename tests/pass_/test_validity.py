"""End of validity handled ahead: agents and financers are alerted with what is left unused,
stock booklets are no longer handed out in the last days (clear French refusal, stable code),
the operator sees unused stock per issuer. Dates are passed in: nothing depends on today."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from kit.clock import PARIS
from pass_ import issuance, validity
from pass_.enums import Role
from tests.api.test_issuance_api import World, assert_error, make_world
from tests.pass_.factories import actor_of


@pytest.fixture
async def world(session: AsyncSession, app: Any) -> World:
    return await make_world(session, app)


def at_noon(day: date) -> datetime:
    return datetime.combine(day, time(12, 0), tzinfo=PARIS)


async def test_stock_booklets_are_not_handed_out_in_the_last_days(
    session: AsyncSession, world: World
) -> None:
    until = world.funded.programme.valid_until
    number = world.in_stock_numbers[0]
    last_day = validity.hand_out_deadline(until, 15)
    assert (until - last_day).days == 15
    with pytest.raises(validity.HandOutClosed) as refused:
        async with session.begin_nested():
            await issuance.hand_out(
                session,
                actor=actor_of(world.issuer.user),
                ref=number,
                beneficiary_id=world.beneficiary_id,
                now=at_noon(date.fromordinal(last_day.toordinal() + 1)),
                hand_out_stop_days=15,
            )
    assert refused.value.code == "hand_out_closed"
    assert "15 derniers jours" in refused.value.message
    still = await issuance.get_booklet(session, actor=actor_of(world.issuer.user), ref=number)
    assert still.status == "in_stock"  # nothing changed
    handed = await issuance.hand_out(
        session,
        actor=actor_of(world.issuer.user),
        ref=number,
        beneficiary_id=world.beneficiary_id,
        now=at_noon(last_day),
        hand_out_stop_days=15,
    )
    assert handed.status == "active"


async def test_the_refusal_is_a_409_with_its_code_over_http(
    client: httpx.AsyncClient, world: World, app: Any
) -> None:
    settings = app.state.settings
    saved = settings.hand_out_stop_days
    # More days than are left in the programme: closed whatever today is.
    settings.hand_out_stop_days = 366
    try:
        r = await client.post(
            f"/api/v1/booklets/{world.in_stock_numbers[1]}/hand-out",
            json={"beneficiary_id": world.beneficiary_id},
            headers=world.issuer.headers,
        )
    finally:
        settings.hand_out_stop_days = saved
    body = assert_error(r, 409, "hand_out_closed")
    assert "ne peut plus être remis" in body["error"]["message"]


async def test_agents_and_financers_are_alerted_with_what_is_left_unused(
    session: AsyncSession, world: World
) -> None:
    until = world.funded.programme.valid_until
    soon = date.fromordinal(until.toordinal() - 26)
    early = date.fromordinal(until.toordinal() - 31)
    kwargs = {"alert_days": 30, "stop_days": 15}
    agent = await validity.alerts(
        session, role=Role.issuer_agent, organisation_id=world.issuer.org.id, today=soon, **kwargs
    )
    [alert] = [a for a in agent if a.programme_id == world.funded.id]
    assert alert.days_left == 26 and not alert.hand_out_closed
    assert (alert.stock_booklets, alert.stock_value_cents) == (3, 3 * 5 * 1000)
    assert (alert.unused_cheques, alert.unused_value_cents) == (5, 5 * 1000)
    financer = await validity.alerts(
        session, role=Role.financer, organisation_id=world.funded.local.id, today=soon, **kwargs
    )
    assert [a.programme_id for a in financer] == [world.funded.id]
    assert financer[0].stock_booklets == 3
    assert (
        await validity.alerts(
            session,
            role=Role.issuer_agent,
            organisation_id=world.issuer.org.id,
            today=early,
            **kwargs,
        )
        == []
    )
    other = await validity.alerts(
        session,
        role=Role.issuer_agent,
        organisation_id=world.other_issuer.org.id,
        today=soon,
        **kwargs,
    )
    assert all(a.programme_id != world.funded.id for a in other)
    late = date.fromordinal(until.toordinal() - 10)
    [closed] = [
        a
        for a in await validity.alerts(
            session,
            role=Role.issuer_agent,
            organisation_id=world.issuer.org.id,
            today=late,
            **kwargs,
        )
        if a.programme_id == world.funded.id
    ]
    assert closed.hand_out_closed


async def test_the_operator_sees_unused_stock_per_issuer(
    client: httpx.AsyncClient, world: World
) -> None:
    r = await client.get("/api/v1/validity/stock", headers=world.operator.headers)
    assert r.status_code == 200
    [line] = [x for x in r.json() if x["programme_id"] == world.funded.id]
    assert line["issuer_id"] == world.issuer.org.id
    assert (line["stock_booklets"], line["unused_cheques"]) == (3, 5)
    own = await client.get("/api/v1/validity/stock", headers=world.other_issuer.headers)
    assert all(x["programme_id"] != world.funded.id for x in own.json())
    assert_error(
        await client.get("/api/v1/validity/stock", headers=world.site.headers), 403, "forbidden"
    )
