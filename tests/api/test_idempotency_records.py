"""The idempotency records' own statements (api/idempotency.py): answers written to the very
rows the transaction reserved (by row address), read back by (user, key); a reserved row that
moved meanwhile fails the whole write instead of leaving a key without its answer."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from api.idempotency import Answer, load_many, record_many, reserve_many


async def test_answers_go_to_the_reserved_rows_and_a_moved_row_fails_whole(
    session: AsyncSession,
) -> None:
    user = random.randint(10**12, 10**13)  # no such user elsewhere in the shared database
    reserved = await reserve_many(session, {(user, "a"): "fp-a", (user, "b"): "fp-b"})
    assert set(reserved) == {(user, "a"), (user, "b")}
    again = await reserve_many(session, {(user, "a"): "fp-a", (user, "c"): "fp-c"})
    assert set(again) == {(user, "c")}  # a key is reserved once

    await record_many(session, {reserved[(user, "a")]: Answer(201, '{"n":1}')})
    loaded = await load_many(session, [(user, "a"), (user, "b"), (user, "zz")])
    assert loaded == {(user, "a"): ("fp-a", Answer(201, '{"n":1}'))}  # "b": no answer yet

    await session.execute(text(  # a new version of the row: it is no longer where reserved
        "UPDATE idempotency_record SET request_hash = request_hash "
        "WHERE user_id = :u AND key = 'b'"), {"u": user})
    with pytest.raises(RuntimeError, match="1 answers to record, 0 rows found"):
        await record_many(session, {reserved[(user, "b")]: Answer(200, "{}")})
