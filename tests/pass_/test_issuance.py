"""Issuance: booklets at the desk and from stock, cancellation, the ledger entries they post,
capacity and quota, booklet numbers, beneficiaries and their pseudonymisation."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from kit.clock import utcnow
from kit.errors import DomainError, Forbidden, NotFound
from ledger import service as ledger
from ledger.errors import IdempotencyConflict
from pass_ import beneficiaries, issuance, programmes
from pass_.codes import normalise_serial
from pass_.enums import NeedLevel, OrganisationKind, Role
from pass_.models import Beneficiary, Booklet, Cheque, Organisation
from pass_.programmes import Actor
from pass_.schemas import BeneficiaryCreate
from pass_.tokens import Keyring
from tests.factories import make_org
from tests.pass_.factories import Funded, make_beneficiary, make_programme


@pytest.fixture(scope="module")
def keyring(tmp_path_factory: pytest.TempPathFactory) -> Keyring:
    return Keyring.load_or_create(tmp_path_factory.mktemp("issuance") / "keys")


def agent(org: Organisation) -> Actor:
    return Actor(user_id=None, organisation_id=org.id, role=Role.issuer_agent)  # type: ignore[arg-type]


def operator() -> Actor:
    return Actor(user_id=None, organisation_id=0, role=Role.operator_admin)


async def balances(session: AsyncSession, programme_id: int) -> tuple[int, int]:
    found = await ledger.balances(
        session, [f"programme:{programme_id}:available", f"programme:{programme_id}:outstanding"]
    )
    return (
        found[f"programme:{programme_id}:available"],
        found[f"programme:{programme_id}:outstanding"],
    )


async def cheque_values(session: AsyncSession, programme_id: int) -> dict[str, int]:
    rows = await session.execute(
        select(Cheque.status, func.sum(Cheque.value_cents))
        .where(Cheque.programme_id == programme_id)
        .group_by(Cheque.status)
    )
    return {status: int(total) for status, total in rows.all()}


async def figures(session: AsyncSession, funded: Funded) -> tuple[int, int]:
    """(programme issued value, issuer's quota used), read afresh."""
    row = (
        await session.execute(
            text(
                "SELECT p.issued_value_cents, i.issued_cheques FROM programme p "
                "JOIN programme_issuer i ON i.programme_id = p.id "
                "WHERE p.id = :p AND i.organisation_id = :i"
            ),
            {"p": funded.id, "i": funded.issuers[0].id},
        )
    ).one()
    return int(row[0]), int(row[1])


async def issue(
    session: AsyncSession, keyring: Keyring, funded: Funded, size: int = 10, **kw: object
) -> issuance.BookletRead:
    issuer = funded.issuers[0]
    beneficiary = await make_beneficiary(session, issuer)
    return await issuance.issue_booklet(
        session,
        keyring=keyring,
        actor=agent(issuer),
        programme_id=funded.id,
        beneficiary_id=beneficiary.id,  # type: ignore[arg-type]
        size=size,
        now=kw.pop("now", None) or utcnow(),  # type: ignore[arg-type]
    )


# --------------------------------------------------------------------------- at the desk


async def test_a_booklet_issued_at_the_desk_is_active_signed_and_posted(
    session: AsyncSession, keyring: Keyring
) -> None:
    funded = await make_programme(session)
    issuer = funded.issuers[0]
    beneficiary = await make_beneficiary(session, issuer)
    now = utcnow()
    booklet = await issuance.issue_booklet(
        session,
        keyring=keyring,
        actor=agent(issuer),
        programme_id=funded.id,
        beneficiary_id=beneficiary.id,  # type: ignore[arg-type]
        size=10,
        now=now,
    )
    assert booklet.status == "active" and booklet.beneficiary_id == beneficiary.id
    assert issuance.normalise_booklet_number(booklet.number) == booklet.number
    assert len(booklet.cheques) == 10
    assert len({c.serial for c in booklet.cheques}) == 10
    programme = funded.programme
    for cheque in booklet.cheques:
        assert cheque.status == "active"
        assert cheque.activated_at == now
        assert normalise_serial(cheque.serial) == cheque.serial
        claims = keyring.verify(cheque.token)
        assert (claims.serial, claims.programme_id, claims.value_cents, claims.redeem_until) == (
            cheque.serial,
            funded.id,
            1000,
            programme.redeem_until,
        )
        assert (cheque.valid_from, cheque.valid_until) == (
            programme.valid_from,
            programme.valid_until,
        )
    stored = await session.scalar(
        select(func.count()).where(Cheque.booklet_id == booklet.id, Cheque.status_changed_at == now)
    )
    assert stored == 10
    assert await figures(session, funded) == (10_000, 10)
    assert await balances(session, funded.id) == (1_000_000 - 10_000, 10_000)
    entry = await ledger.get_entry(session, f"activate:{booklet.id}")
    assert entry is not None and entry.kind == "activation"
    await session.refresh(beneficiary)
    assert beneficiary.last_booklet_at == now


async def test_a_size_the_programme_does_not_allow_is_refused_and_changes_nothing(
    session: AsyncSession, keyring: Keyring
) -> None:
    funded = await make_programme(session, booklet_sizes=[5, 10])
    with pytest.raises(issuance.InvalidBookletSize) as refused:
        await issue(session, keyring, funded, size=7)
    assert "5 ou 10" in refused.value.message
    assert await figures(session, funded) == (0, 0)
    assert await session.scalar(select(func.count()).where(Booklet.programme_id == funded.id)) == 0


async def test_booklets_may_be_issued_before_valid_from_but_not_after_valid_until(
    session: AsyncSession, keyring: Keyring
) -> None:
    year = utcnow().year
    funded = await make_programme(
        session,
        valid_from=date(year + 1, 1, 1),
        valid_until=date(year + 1, 12, 31),
        redeem_until=date(year + 2, 1, 31),
    )
    early = await issue(session, keyring, funded, size=5)
    assert {c.status for c in early.cheques} == {"active"}
    assert {c.valid_from for c in early.cheques} == {date(year + 1, 1, 1)}
    after_end = utcnow().replace(year=year + 2, month=1, day=1)
    with pytest.raises(issuance.ProgrammeEnded) as refused:
        await issue(session, keyring, funded, size=5, now=after_end)
    assert refused.value.code == "programme_ended"
    assert await figures(session, funded) == (5_000, 5)


async def test_capacity_is_never_exceeded(session: AsyncSession, keyring: Keyring) -> None:
    # 250 € from the State at 50 % and 250 € from the département: 500 € of cheques.
    funded = await make_programme(session, state_cents=25_000, local_cents=25_000)
    for _ in range(5):
        await issue(session, keyring, funded, size=10)
    with pytest.raises(issuance.ProgrammeCapacityExceeded) as refused:
        await issue(session, keyring, funded, size=5)
    assert refused.value.code == "programme_capacity_exceeded"
    assert refused.value.details["remaining_cents"] == 0
    assert await figures(session, funded) == (50_000, 50)
    assert await balances(session, funded.id) == (0, 50_000)


async def test_a_quota_refusal_gives_the_capacity_back(
    session: AsyncSession, keyring: Keyring
) -> None:
    funded = await make_programme(session, quota=15)
    await issue(session, keyring, funded, size=10)
    with pytest.raises(issuance.QuotaExceeded) as refused:
        await issue(session, keyring, funded, size=10)
    assert refused.value.details["remaining_cheques"] == 5
    assert await figures(session, funded) == (10_000, 10)
    await issue(session, keyring, funded, size=5)
    assert await figures(session, funded) == (15_000, 15)


async def test_only_an_agent_of_an_issuer_of_the_programme_may_issue(
    session: AsyncSession, keyring: Keyring
) -> None:
    funded = await make_programme(session)
    outsider = await make_org(session, OrganisationKind.issuer)
    beneficiary = await make_beneficiary(session, outsider)
    with pytest.raises(Forbidden):
        await issuance.issue_booklet(
            session,
            keyring=keyring,
            actor=agent(outsider),
            programme_id=funded.id,
            beneficiary_id=beneficiary.id,  # type: ignore[arg-type]
            size=5,
            now=utcnow(),
        )
    # An agent of the programme's issuer cannot issue to another issuer's beneficiary.
    with pytest.raises(NotFound):
        await issuance.issue_booklet(
            session,
            keyring=keyring,
            actor=agent(funded.issuers[0]),
            programme_id=funded.id,
            beneficiary_id=beneficiary.id,  # type: ignore[arg-type]
            size=5,
            now=utcnow(),
        )
    with pytest.raises(Forbidden):
        await issuance.issue_booklet(
            session,
            keyring=keyring,
            actor=operator(),
            programme_id=funded.id,
            beneficiary_id=beneficiary.id,  # type: ignore[arg-type]
            size=5,
            now=utcnow(),
        )
    assert await figures(session, funded) == (0, 0)


# --------------------------------------------------------------------------- from stock


async def test_ordered_booklets_wait_in_stock_without_value(
    session: AsyncSession, keyring: Keyring
) -> None:
    funded = await make_programme(session, quota=10)
    issuer = funded.issuers[0]
    order = await issuance.order_booklets(
        session,
        keyring=keyring,
        actor=operator(),
        programme_id=funded.id,
        issuer_id=issuer.id,  # type: ignore[arg-type]
        booklets=3,
        size=5,
        now=utcnow(),
    )
    assert (order.booklet_count, order.cheque_count) == (3, 15)
    assert order.pdf_url == f"/api/v1/orders/{order.id}/pdf"
    assert len({b.number for b in order.booklets}) == 3
    # In stock: no value anywhere, even beyond the quota of 10 cheques.
    assert await cheque_values(session, funded.id) == {"in_stock": 15_000}
    assert await figures(session, funded) == (0, 0)
    assert await balances(session, funded.id) == (1_000_000, 0)
    stock = await issuance.get_booklet(session, actor=agent(issuer), ref=order.booklets[0].id)
    assert stock.status == "in_stock" and stock.beneficiary_id is None
    assert {c.status for c in stock.cheques} == {"in_stock"}
    assert {c.activated_at for c in stock.cheques} == {None}


async def test_handing_out_a_booklet_by_its_printed_number_activates_it(
    session: AsyncSession, keyring: Keyring
) -> None:
    funded = await make_programme(session, quota=10)
    issuer = funded.issuers[0]
    order = await issuance.order_booklets(
        session,
        keyring=keyring,
        actor=agent(issuer),
        programme_id=funded.id,
        issuer_id=issuer.id,  # type: ignore[arg-type]
        booklets=3,
        size=5,
        now=utcnow(),
    )
    first, second, third = order.booklets
    beneficiary = await make_beneficiary(session, issuer)
    now = utcnow()
    typed = first.number.lower().replace("-", " ").replace("0", "o")
    booklet = await issuance.hand_out(
        session,
        actor=agent(issuer),
        ref=typed,
        beneficiary_id=beneficiary.id,  # type: ignore[arg-type]
        now=now,
    )
    assert booklet.id == first.id and booklet.status == "active"
    assert booklet.handed_out_at == now and booklet.beneficiary_id == beneficiary.id
    assert {(c.status, c.activated_at) for c in booklet.cheques} == {("active", now)}
    assert await figures(session, funded) == (5_000, 5)
    assert await balances(session, funded.id) == (995_000, 5_000)
    with pytest.raises(issuance.BookletNotInStock):
        await issuance.hand_out(
            session,
            actor=agent(issuer),
            ref=first.id,
            beneficiary_id=beneficiary.id,  # type: ignore[arg-type]
            now=now,
        )
    await issuance.hand_out(
        session,
        actor=agent(issuer),
        ref=second.number,
        beneficiary_id=beneficiary.id,  # type: ignore[arg-type]
        now=now,
    )
    # The quota (10 cheques) counts cheques handed out: the third booklet must wait.
    with pytest.raises(issuance.QuotaExceeded):
        await issuance.hand_out(
            session,
            actor=agent(issuer),
            ref=third.number,
            beneficiary_id=beneficiary.id,  # type: ignore[arg-type]
            now=now,
        )
    third_now = await issuance.get_booklet(session, actor=agent(issuer), ref=third.id)
    assert third_now.status == "in_stock"
    assert {c.status for c in third_now.cheques} == {"in_stock"}
    assert await figures(session, funded) == (10_000, 10)


async def test_another_issuers_stock_cannot_be_seen_or_handed_out(
    session: AsyncSession, keyring: Keyring
) -> None:
    funded = await make_programme(session)
    issuer = funded.issuers[0]
    order = await issuance.order_booklets(
        session,
        keyring=keyring,
        actor=operator(),
        programme_id=funded.id,
        issuer_id=issuer.id,  # type: ignore[arg-type]
        booklets=1,
        size=5,
        now=utcnow(),
    )
    other = await make_org(session, OrganisationKind.issuer)
    theirs = await make_beneficiary(session, other)
    [booklet] = order.booklets
    for ref in (booklet.id, booklet.number):
        with pytest.raises(NotFound):
            await issuance.get_booklet(session, actor=agent(other), ref=ref)
        with pytest.raises(NotFound):
            await issuance.hand_out(
                session,
                actor=agent(other),
                ref=ref,
                beneficiary_id=theirs.id,  # type: ignore[arg-type]
                now=utcnow(),
            )
    with pytest.raises(Forbidden):
        await issuance.order_booklets(
            session,
            keyring=keyring,
            actor=agent(other),
            programme_id=funded.id,
            issuer_id=issuer.id,  # type: ignore[arg-type]
            booklets=1,
            size=5,
            now=utcnow(),
        )


# --------------------------------------------------------------------------- cancellation


async def test_cancelling_a_booklet_returns_the_value_of_its_active_cheques_only(
    session: AsyncSession, keyring: Keyring
) -> None:
    funded = await make_programme(session)
    booklet = await issue(session, keyring, funded, size=10)
    # A redemption happened before the loss (simulated as the redemption feature records it).
    redeemed = booklet.cheques[0]
    await session.execute(
        text("UPDATE cheque SET status = 'redeemed' WHERE id = :id"), {"id": redeemed.id}
    )
    await ledger.post(
        session,
        key=f"redeem:{redeemed.id}",
        kind="redemption",
        postings=[(f"programme:{funded.id}:outstanding", -1000), ("site:0:payable", 1000)],
    )
    cancelled = await issuance.cancel_booklet(
        session,
        actor=agent(funded.issuers[0]),
        ref=booklet.id,
        reason="Carnet perdu  dans le bus",
        now=utcnow(),
    )
    assert cancelled.status == "cancelled" and cancelled.cancel_reason == "Carnet perdu dans le bus"
    statuses = [c.status for c in cancelled.cheques]
    assert statuses == ["redeemed"] + ["cancelled"] * 9
    # Capacity and quota count the redeemed cheque only; the ledger agrees with the cheques.
    assert await figures(session, funded) == (1_000, 1)
    values = await cheque_values(session, funded.id)
    assert values == {"redeemed": 1_000, "cancelled": 9_000}
    assert await balances(session, funded.id) == (1_000_000 - 1_000, 0)
    entry = await ledger.get_entry(session, f"cancel:{booklet.id}")
    assert entry is not None and sorted(entry.postings) == [
        (f"programme:{funded.id}:available", 9_000),
        (f"programme:{funded.id}:outstanding", -9_000),
    ]
    with pytest.raises(issuance.BookletAlreadyCancelled):
        await issuance.cancel_booklet(
            session, actor=agent(funded.issuers[0]), ref=booklet.id, reason="encore", now=utcnow()
        )
    assert await balances(session, funded.id) == (999_000, 0)
    detail = await programmes.programme_detail(
        session, await programmes.get_programme(session, funded.id)
    )
    assert (detail.figures.redeemed_cents, detail.figures.cancelled_cents) == (1_000, 9_000)
    assert detail.figures.remaining_capacity_cents == 1_000_000 - 1_000


async def test_cancelling_stolen_stock_posts_nothing(
    session: AsyncSession, keyring: Keyring
) -> None:
    funded = await make_programme(session)
    issuer = funded.issuers[0]
    order = await issuance.order_booklets(
        session,
        keyring=keyring,
        actor=agent(issuer),
        programme_id=funded.id,
        issuer_id=issuer.id,  # type: ignore[arg-type]
        booklets=2,
        size=5,
        now=utcnow(),
    )
    stolen = order.booklets[0]
    cancelled = await issuance.cancel_booklet(
        session, actor=agent(issuer), ref=stolen.number, reason="Stock volé", now=utcnow()
    )
    assert {c.status for c in cancelled.cheques} == {"cancelled"}
    assert await ledger.get_entry(session, f"cancel:{stolen.id}") is None
    assert await balances(session, funded.id) == (1_000_000, 0)
    detail = await programmes.programme_detail(
        session, await programmes.get_programme(session, funded.id)
    )
    assert detail.figures.cancelled_cents == 0 and detail.figures.in_stock_cheques == 5
    with pytest.raises(issuance.BookletNotInStock):
        await issuance.hand_out(
            session,
            actor=agent(issuer),
            ref=stolen.id,
            beneficiary_id=(await make_beneficiary(session, issuer)).id,  # type: ignore[arg-type]
            now=utcnow(),
        )


async def test_ledger_balances_follow_the_cheques_and_a_retried_key_changes_nothing(
    session: AsyncSession, keyring: Keyring
) -> None:
    funded = await make_programme(session)
    first = await issue(session, keyring, funded, size=10)
    second = await issue(session, keyring, funded, size=5)
    await issuance.cancel_booklet(
        session, actor=agent(funded.issuers[0]), ref=first.id, reason="Perdu", now=utcnow()
    )
    values = await cheque_values(session, funded.id)
    assert values == {"active": 5_000, "cancelled": 10_000}
    assert await balances(session, funded.id) == (1_000_000 - 5_000, 5_000)
    # Each entry again under its key, same content: found, not written twice.
    for key in (f"activate:{first.id}", f"activate:{second.id}", f"cancel:{first.id}"):
        entry = await ledger.get_entry(session, key)
        assert entry is not None
        again = await ledger.post(
            session, key=key, kind=entry.kind, postings=list(entry.postings), memo=entry.memo
        )
        assert not again.created and again.id == entry.id
    assert await balances(session, funded.id) == (995_000, 5_000)
    # The same key with other content is refused.
    with pytest.raises(IdempotencyConflict):
        async with session.begin_nested():
            await ledger.post(
                session,
                key=f"activate:{second.id}",
                kind="activation",
                postings=[
                    (f"programme:{funded.id}:available", -1),
                    (f"programme:{funded.id}:outstanding", 1),
                ],
            )
    assert await balances(session, funded.id) == (995_000, 5_000)


# --------------------------------------------------------------------------- history, numbers


async def test_the_history_is_paged_newest_first_and_findable_by_number(
    session: AsyncSession, keyring: Keyring
) -> None:
    funded = await make_programme(session)
    issued = [await issue(session, keyring, funded, size=5) for _ in range(3)]
    actor = agent(funded.issuers[0])
    page1 = await issuance.list_booklets(session, actor=actor, page=1, per_page=2)
    page2 = await issuance.list_booklets(session, actor=actor, page=2, per_page=2)
    assert page1.total == page2.total == 3
    listed = [b.id for b in page1.items + page2.items]
    assert sorted(listed) == sorted(b.id for b in issued) and len(set(listed)) == 3
    found = await issuance.list_booklets(session, actor=actor, number=issued[1].number.lower())
    assert [b.id for b in found.items] == [issued[1].id]
    stranger = agent(await make_org(session, OrganisationKind.issuer))
    assert (await issuance.list_booklets(session, actor=stranger)).total == 0
    assert (await issuance.list_booklets(session, actor=actor, number="PN-AAAA")).total == 0


def test_booklet_numbers_are_short_typable_and_never_look_like_serials() -> None:
    numbers = {issuance.new_booklet_number() for _ in range(2000)}
    assert len(numbers) == 2000
    for number in list(numbers)[:50]:
        assert len(number) == 12 and number.startswith("CN-")
        assert issuance.normalise_booklet_number(number.replace("-", "").lower()) == number
        with pytest.raises(DomainError):
            normalise_serial(number)
    assert issuance.normalise_booklet_number("cn-0ilo-abcd") == "CN-0110-ABCD"
    assert issuance.normalise_booklet_number("PN-7K3Q-9ZD2-XW4M-R") is None
    assert issuance.normalise_booklet_number("CN-UUUU-UUUU") is None  # U is not Crockford


# --------------------------------------------------------------------------- beneficiaries


async def test_beneficiaries_are_found_by_reference_within_their_issuer_only(
    session: AsyncSession,
) -> None:
    issuer = await make_org(session, OrganisationKind.issuer)
    other = await make_org(session, OrganisationKind.issuer)
    mine = await make_beneficiary(session, issuer, reference="CCAS-2026-0042")
    await make_beneficiary(session, issuer, reference="CCAS-2026-00421")
    await make_beneficiary(session, other, reference="CCAS-2026-0042")  # same text elsewhere
    found = await beneficiaries.find_beneficiaries(
        session,
        issuer_id=issuer.id,
        reference="ccas-2026-0042",  # type: ignore[arg-type]
    )
    assert [b.reference for b in found] == ["CCAS-2026-0042", "CCAS-2026-00421"]
    assert found[0].id == mine.id
    assert (
        await beneficiaries.find_beneficiaries(
            session,
            issuer_id=issuer.id,
            reference="%",  # type: ignore[arg-type]
        )
        == []
    )
    with pytest.raises(beneficiaries.BeneficiaryExists):
        await make_beneficiary(session, issuer, reference="CCAS-2026-0042")
    with pytest.raises(NotFound):
        await beneficiaries.get_beneficiary(
            session,
            issuer_id=other.id,
            beneficiary_id=mine.id,  # type: ignore[arg-type]
        )


async def test_pseudonymisation_clears_references_past_the_retention_period_only(
    session: AsyncSession, keyring: Keyring
) -> None:
    funded = await make_programme(session)
    issuer = funded.issuers[0]
    now = utcnow()
    old_booklet = await make_beneficiary(session, issuer, reference="ANCIEN-CARNET")
    recent_booklet = await make_beneficiary(session, issuer, reference="CARNET-RECENT")
    never = await beneficiaries.create_beneficiary(
        session,
        issuer_id=issuer.id,  # type: ignore[arg-type]
        data=BeneficiaryCreate(reference="SANS-CARNET", need_level=NeedLevel.urgence),
    )
    old_booklet.last_booklet_at = now - timedelta(days=1200)
    recent_booklet.created_at = now - timedelta(days=2000)
    recent_booklet.last_booklet_at = now - timedelta(days=30)
    never.created_at = now - timedelta(days=1100)
    await session.flush()
    count = await beneficiaries.pseudonymise_beneficiaries(session, now=now, retention_days=3 * 365)
    assert count >= 2
    rows = {
        b.id: (b.reference, b.pseudonymised_at)
        for b in (
            await session.scalars(
                select(Beneficiary)
                .where(Beneficiary.issuer_id == issuer.id)
                .execution_options(populate_existing=True)
            )
        ).all()
    }
    assert rows[old_booklet.id] == (None, now)
    assert rows[never.id] == (None, now)
    assert rows[recent_booklet.id] == ("CARNET-RECENT", None)
    # Their reference is free again, and their booklets stay theirs.
    assert old_booklet.reference is None
    again = await beneficiaries.pseudonymise_beneficiaries(session, now=now, retention_days=3 * 365)
    assert again == 0


# --------------------------------------------------------------------------- audit


async def test_the_audit_recomputes_counters_and_outstanding_from_the_cheques(
    session: AsyncSession, keyring: Keyring
) -> None:
    funded = await make_programme(session)
    booklet = await issue(session, keyring, funded, size=10)
    await issue(session, keyring, funded, size=5)
    await issuance.cancel_booklet(
        session, actor=agent(funded.issuers[0]), ref=booklet.id, reason="Perdu", now=utcnow()
    )

    async def mine() -> set[str]:
        return {
            d.kind
            for d in await issuance.audit_issuance(session)
            if d.details.get("programme_id") == funded.id
            or d.account == f"programme:{funded.id}:outstanding"
        }

    assert await mine() == set()
    await session.execute(
        text("UPDATE programme SET issued_value_cents = issued_value_cents + 1 WHERE id = :p"),
        {"p": funded.id},
    )
    await session.execute(
        text("UPDATE programme_issuer SET issued_cheques = 0 WHERE programme_id = :p"),
        {"p": funded.id},
    )
    await ledger.post(
        session,
        key=f"test-corruption:{funded.id}",
        kind="test",
        postings=[
            (f"programme:{funded.id}:outstanding", 100),
            (f"programme:{funded.id}:available", -100),
        ],
    )
    assert await mine() == {"programme_issued_value", "issuer_quota_used", "programme_outstanding"}


# --------------------------------------------------------------------------- printing


async def test_the_cover_names_communes_from_the_reference_not_by_their_code(
    session: AsyncSession, keyring: Keyring, tmp_path: object
) -> None:
    """A programme of one commune and a qualified site there whose address gives no town: the
    cover names the commune (Andouillé-Neuville), in the territory and the site's line, never
    by its INSEE code."""
    from pass_ import booklet_print
    from tests.pass_.test_pdf import pdf_text

    site = await make_org(session, OrganisationKind.site, name="Médiathèque sans ville",
                          commune_insee="35003", address="Place de la Mairie")
    funded = await make_programme(session, territory=("35003",))
    booklet = await issue(session, keyring, funded, size=5)
    content = await booklet_print.booklet_pdf(
        session, actor=agent(funded.issuers[0]), ref=booklet.id
    )
    cover = pdf_text(content, tmp_path).split("\f")[0]  # type: ignore[arg-type]
    assert site.name in cover
    assert "Andouillé-Neuville" in cover and "35003" not in cover
