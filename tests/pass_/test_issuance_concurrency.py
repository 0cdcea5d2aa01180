"""Capacity and quota hold under concurrent issuance: 20 requests at once, each on its own
connection and transaction, exactly as many succeed as the limit allows, and the programme's
counters, the cheques and the ledger agree afterwards."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ledger import service as ledger
from pass_.enums import OrganisationKind
from tests.factories import Actor, make_actor
from tests.pass_.factories import Funded, make_beneficiary, make_programme

REQUESTS = 20


async def committed_world(
    sessionmaker: async_sessionmaker[AsyncSession], app: Any, **programme: object
) -> tuple[Funded, Actor, list[int]]:
    """A programme, an agent of its issuer and 20 beneficiaries, committed for real."""
    async with sessionmaker() as session:
        agent = await make_actor(session, app, OrganisationKind.issuer)
        funded = await make_programme(session, issuers=[agent.org], **programme)
        people = [await make_beneficiary(session, agent.org) for _ in range(REQUESTS)]
        await session.commit()
    return funded, agent, [p.id for p in people]  # type: ignore[misc]


async def issue_concurrently(
    client: httpx.AsyncClient, funded: Funded, agent: Actor, people: list[int], size: int
) -> Counter[tuple[int, str]]:
    async def one(beneficiary_id: int) -> httpx.Response:
        return await client.post(
            "/api/v1/booklets",
            json={"programme_id": funded.id, "beneficiary_id": beneficiary_id, "size": size},
            headers=agent.headers,
        )

    responses = await asyncio.gather(*(one(b) for b in people))
    return Counter((r.status_code, r.json().get("error", {}).get("code", "ok")) for r in responses)


async def state_of(
    sessionmaker: async_sessionmaker[AsyncSession], funded: Funded
) -> dict[str, int]:
    async with sessionmaker() as session:
        row = (
            await session.execute(
                text("""
                SELECT p.issued_value_cents, i.issued_cheques,
                       (SELECT count(*) FROM booklet b WHERE b.programme_id = p.id),
                       (SELECT count(*) FROM cheque c
                        WHERE c.programme_id = p.id AND c.status = 'active'),
                       (SELECT CAST(coalesce(sum(value_cents), 0) AS bigint) FROM cheque c
                        WHERE c.programme_id = p.id AND c.status = 'active')
                FROM programme p JOIN programme_issuer i ON i.programme_id = p.id
                WHERE p.id = :p
                """),
                {"p": funded.id},
            )
        ).one()
        found = await ledger.balances(
            session, [f"programme:{funded.id}:available", f"programme:{funded.id}:outstanding"]
        )
    return {
        "issued_value_cents": row[0],
        "issued_cheques": row[1],
        "booklets": row[2],
        "active_cheques": row[3],
        "active_cents": row[4],
        "available": found[f"programme:{funded.id}:available"],
        "outstanding": found[f"programme:{funded.id}:outstanding"],
    }


async def test_capacity_holds_under_twenty_concurrent_issuances(
    committed_client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    app: Any,
) -> None:
    # 250 € of State at 50 % and 250 € of département: 500 € = 5 booklets of 10 × 10 €.
    funded, agent, people = await committed_world(
        sessionmaker, app, state_cents=25_000, local_cents=25_000, quota=10_000
    )
    outcome = await issue_concurrently(committed_client, funded, agent, people, size=10)
    assert outcome == Counter({(201, "ok"): 5, (409, "programme_capacity_exceeded"): REQUESTS - 5})
    assert await state_of(sessionmaker, funded) == {
        "issued_value_cents": 50_000,
        "issued_cheques": 50,
        "booklets": 5,
        "active_cheques": 50,
        "active_cents": 50_000,
        "available": 0,
        "outstanding": 50_000,
    }


async def test_quota_holds_under_twenty_concurrent_issuances(
    committed_client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    app: Any,
) -> None:
    funded, agent, people = await committed_world(sessionmaker, app, quota=35)
    outcome = await issue_concurrently(committed_client, funded, agent, people, size=5)
    assert outcome == Counter({(201, "ok"): 7, (409, "quota_exceeded"): REQUESTS - 7})
    assert await state_of(sessionmaker, funded) == {
        "issued_value_cents": 35_000,
        "issued_cheques": 35,
        "booklets": 7,
        "active_cheques": 35,
        "active_cents": 35_000,
        "available": 1_000_000 - 35_000,
        "outstanding": 35_000,
    }


async def test_concurrent_hand_outs_of_one_booklet_activate_it_once(
    committed_client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    app: Any,
) -> None:
    funded, agent, people = await committed_world(sessionmaker, app)
    ordered = await committed_client.post(
        f"/api/v1/programmes/{funded.id}/orders",
        json={"issuer_id": agent.org.id, "booklets": 1, "size": 10},
        headers=agent.headers,
    )
    assert ordered.status_code == 201, ordered.text
    number = ordered.json()["booklets"][0]["number"]

    async def hand_out(beneficiary_id: int) -> httpx.Response:
        return await committed_client.post(
            f"/api/v1/booklets/{number}/hand-out",
            json={"beneficiary_id": beneficiary_id},
            headers=agent.headers,
        )

    responses = await asyncio.gather(*(hand_out(b) for b in people))
    outcome = Counter(
        (r.status_code, r.json().get("error", {}).get("code", "ok")) for r in responses
    )
    assert outcome == Counter({(200, "ok"): 1, (409, "booklet_not_in_stock"): REQUESTS - 1})
    state = await state_of(sessionmaker, funded)
    assert (state["issued_value_cents"], state["outstanding"], state["active_cheques"]) == (
        10_000,
        10_000,
        10,
    )
