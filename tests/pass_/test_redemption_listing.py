"""Listings page by keyset cursor; numbered pages stop at MAX_PAGE with a clear French error
(an offset that deep reads and throws away every row before it). The cursor's own behaviour
is tested with the redemptions (tests/pass_/test_redemption.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from kit.errors import DomainError
from pass_ import redemption_listing


async def test_a_page_number_beyond_the_last_numbered_page_is_refused_in_french(
    session: AsyncSession,
) -> None:
    now = datetime(2025, 3, 5, tzinfo=UTC)
    last = await redemption_listing.list_redemptions(
        session, site_id=None, now=now, page=redemption_listing.MAX_PAGE)
    assert last.page == redemption_listing.MAX_PAGE
    with pytest.raises(DomainError) as caught:
        await redemption_listing.list_redemptions(
            session, site_id=None, now=now, page=redemption_listing.MAX_PAGE + 1)
    assert caught.value.code == "page_too_deep"
    assert "suivez le lien de la page suivante" in caught.value.message
    assert caught.value.details == {"page": 101, "max_page": 100}
