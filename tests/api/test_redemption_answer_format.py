"""The at-once roads' 201 body, filled into a format, is byte for byte pydantic's own (no
database): what they store must replay exactly as the general path would have written it."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from api.idempotency import Answer
from api.routers.redemptions import _answer_format, _redeemed_body
from pass_.redemption_schemas import RedemptionRead
from pass_.tokens import ChequeClaims

ids = st.integers(min_value=1, max_value=2**63 - 1)
instants = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                        timezones=st.sampled_from([UTC, timezone(timedelta(hours=1)),
                                                   timezone(timedelta(hours=-9, minutes=-30))]))
serials = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)


def reference(redemption_id: int, stated: ChequeClaims, site_id: int, now: datetime) -> str:
    return Answer.of(201, RedemptionRead(
        id=redemption_id, cheque_serial=stated.serial, value_cents=stated.value_cents,
        redeemed_at=now, site_id=site_id,
    ).model_dump(mode="json")).body


@given(redemption_id=ids, serial=serials, value=st.integers(min_value=1, max_value=2**40),
       site_id=ids, now=instants)
def test_the_body_is_pydantics(
    redemption_id: int, serial: str, value: int, site_id: int, now: datetime,
) -> None:
    stated = ChequeClaims(serial=serial, programme_id=1, value_cents=value,
                          redeem_until=date(2030, 1, 1))
    body = _redeemed_body(redemption_id, stated, site_id, now)
    assert body == reference(redemption_id, stated, site_id, now)
    answer_format = _answer_format(stated, site_id, now)
    if answer_format is not None:
        assert answer_format % redemption_id == body


def test_a_whole_second_and_a_percent_sign_keep_their_form() -> None:
    stated = ChequeClaims(serial="100% ABCD-EFGH", programme_id=1, value_cents=1000,
                          redeem_until=date(2030, 1, 1))
    now = datetime(2026, 11, 29, 23, 30, tzinfo=UTC)
    assert _redeemed_body(7, stated, 3, now) == reference(7, stated, 3, now)
    assert '"redeemed_at":"2026-11-29T23:30:00Z"' in _redeemed_body(7, stated, 3, now)
