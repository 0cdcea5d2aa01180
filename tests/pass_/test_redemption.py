"""Redemption rules (DESIGN.md §5): codes, every refusal, Paris days, ledger, reversal, listing."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from kit.errors import DomainError
from ledger import service as ledger
from pass_ import issuance, redemption_listing
from pass_ import redemption as svc
from pass_.codes import new_serial
from pass_.enums import ChequeStatus, DemarcheFamily, OrganisationKind, Role, Service
from pass_.models import Cheque, Organisation, Redemption
from pass_.programmes import Actor
from pass_.tokens import ChequeClaims, Keyring
from tests.factories import make_org
from tests.pass_.redemption_factories import Scene, make_scene

NOW = datetime(2025, 3, 12, 9, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def keyring(tmp_path_factory: pytest.TempPathFactory) -> Keyring:
    return Keyring.load_or_create(tmp_path_factory.mktemp("redemption") / "keys")


@pytest.fixture
async def scene(session: AsyncSession, keyring: Keyring) -> Scene:
    """Ten active cheques of 10 € on département 35, valid in 2025, redeemable to 31/01/2026."""
    return await make_scene(
        session,
        keyring,
        cheques=10,
        now=datetime(2025, 1, 15, 10, tzinfo=UTC),
        valid_from=date(2025, 1, 1),
        valid_until=date(2025, 12, 31),
        redeem_until=date(2026, 1, 31),
    )


@pytest.fixture
async def site(session: AsyncSession) -> Organisation:
    return await make_org(session, OrganisationKind.site, commune_insee="35238")


async def redeem(
    session: AsyncSession,
    keyring: Keyring,
    site: Organisation,
    code: str,
    *,
    now: datetime = NOW,
    demarche: DemarcheFamily | None = DemarcheFamily.caf,
) -> svc.RedemptionRead:
    return await svc.redeem_cheque(
        session,
        keyring=keyring,
        site_id=site.id,  # type: ignore[arg-type]
        user_id=None,
        code=code,
        service=Service.realiser_demarche,
        demarche_family=demarche,
        now=now,
    )


async def refusal(coro: object) -> DomainError:
    with pytest.raises(DomainError) as caught:
        await coro  # type: ignore[misc]
    return caught.value


async def status_of(session: AsyncSession, cheque_id: int) -> str:
    return str(await session.scalar(select(Cheque.status).where(Cheque.id == cheque_id)))


# ------------------------------------------------------------------------------------- codes


def test_a_serial_is_read_in_any_case_with_or_without_dashes_or_spaces(keyring: Keyring) -> None:
    serial = new_serial()  # PN-XXXX-XXXX-XXXX-C
    compact = serial.replace("-", "")
    for typed in (
        serial,
        serial.lower(),
        compact,
        compact[2:],
        " ".join(compact[2:]),
        f"  {serial.lower()}  ",
    ):
        assert svc.parse_code(typed, keyring) == svc.ParsedCode(serial)


def test_a_typo_in_a_serial_is_caught_by_the_check_character(keyring: Keyring) -> None:
    serial = new_serial()
    symbol = serial[3]
    typo = serial[:3] + ("A" if symbol != "A" else "B") + serial[4:]
    assert excinfo_code(lambda: svc.parse_code(typo, keyring)) == "serial_check_failed"


def excinfo_code(call: object) -> str:
    with pytest.raises(DomainError) as caught:
        call()  # type: ignore[operator]
    return caught.value.code


def test_a_token_is_read_for_its_serial_and_junk_is_refused(
    keyring: Keyring, tmp_path: object
) -> None:
    claims = ChequeClaims(new_serial(), 7, 1000, date(2026, 1, 31))
    token = keyring.sign(claims)
    assert svc.parse_code(token, keyring) == svc.ParsedCode(claims.serial, token)
    # Read in its canonical form (as stored at issuance), whatever the case and spaces.
    assert svc.parse_code(f" {token.lower()} ", keyring) == svc.ParsedCode(claims.serial, token)
    assert excinfo_code(lambda: svc.parse_code(token[:-1], keyring)) == "invalid_token"
    assert excinfo_code(lambda: svc.parse_code("", keyring)) == "invalid_serial"
    # A key the keyring does not know (retired, or never ours) signs nothing we accept.
    stranger = Keyring.load_or_create(tmp_path / "other").sign(claims)  # type: ignore[operator]
    assert excinfo_code(lambda: svc.parse_code(stranger, keyring)) == "invalid_token"


async def test_a_forged_or_altered_token_of_a_real_cheque_is_refused_and_a_recased_one_redeems(
    session: AsyncSession, keyring: Keyring, scene: Scene, site: Organisation, tmp_path: object
) -> None:
    c = scene.cheques
    flipped = c[0].token[:-3] + ("A" if c[0].token[-3] != "A" else "B") + c[0].token[-2:]
    assert (await refusal(redeem(session, keyring, site, flipped))).code == "invalid_token"
    assert await status_of(session, c[0].id) == ChequeStatus.active
    done = await redeem(session, keyring, site, c[1].token.lower())
    assert done.cheque_serial == c[1].serial


# ------------------------------------------------------------------------------------- redeem


async def test_a_qualified_site_of_the_territory_redeems_an_active_cheque_and_the_ledger_follows(
    session: AsyncSession, keyring: Keyring, scene: Scene, site: Organisation
) -> None:
    cheque = scene.cheques[0]
    pid = scene.programme_id
    before = await ledger.balances(session, [f"programme:{pid}:outstanding"])
    done = await redeem(session, keyring, site, cheque.serial.lower().replace("-", " "))
    assert (done.cheque_serial, done.value_cents, done.site_id) == (cheque.serial, 1000, site.id)
    assert done.redeemed_at == NOW
    assert await status_of(session, cheque.id) == ChequeStatus.redeemed
    row = await session.get(Redemption, done.id)
    assert row is not None
    assert (row.cheque_id, row.programme_id, row.service, row.demarche_family) == (
        cheque.id,
        pid,
        "realiser_demarche",
        "caf",
    )
    after = await ledger.balances(
        session, [f"programme:{pid}:outstanding", f"site:{site.id}:payable"]
    )
    assert after[f"programme:{pid}:outstanding"] == before[f"programme:{pid}:outstanding"] - 1000
    assert after[f"site:{site.id}:payable"] == 1000
    entry = await ledger.get_entry(session, f"redeem:{done.id}")
    assert entry is not None and entry.kind == "redemption"


async def test_a_cheque_is_redeemed_once_and_the_second_attempt_says_when_never_where(
    session: AsyncSession, keyring: Keyring, scene: Scene, site: Organisation
) -> None:
    first = await redeem(session, keyring, site, scene.cheques[0].serial)
    other = await make_org(session, OrganisationKind.site, commune_insee="35047")
    for who in (site, other):
        error = await refusal(
            redeem(session, keyring, who, scene.cheques[0].token, now=NOW + timedelta(hours=2))
        )
        assert error.code == "cheque_already_redeemed"
        assert error.details == {"redeemed_at": first.redeemed_at}
    count = await session.scalar(
        text("SELECT count(*) FROM redemption WHERE cheque_id = :c"), {"c": scene.cheques[0].id}
    )
    assert count == 1


async def test_a_site_that_is_not_qualified_cannot_redeem(
    session: AsyncSession, keyring: Keyring, scene: Scene
) -> None:
    pending = await make_org(session, OrganisationKind.site, qualified=False)
    error = await refusal(redeem(session, keyring, pending, scene.cheques[0].serial))
    assert error.code == "site_not_qualified"
    assert await status_of(session, scene.cheques[0].id) == ChequeStatus.active


async def test_a_site_outside_the_programme_territory_cannot_redeem(
    session: AsyncSession, keyring: Keyring, scene: Scene
) -> None:
    paris = await make_org(session, OrganisationKind.site, commune_insee="75056")
    error = await refusal(redeem(session, keyring, paris, scene.cheques[0].serial))
    assert error.code == "site_not_eligible"
    assert await status_of(session, scene.cheques[0].id) == ChequeStatus.active


async def test_a_territory_of_communes_admits_exactly_its_communes(
    session: AsyncSession, keyring: Keyring
) -> None:
    scene = await make_scene(
        session,
        keyring,
        cheques=2,
        territory=("35238", "29019"),
        now=datetime(2025, 1, 15, tzinfo=UTC),
        valid_from=date(2025, 1, 1),
    )
    brest = await make_org(session, OrganisationKind.site, commune_insee="29019")
    quimper = await make_org(session, OrganisationKind.site, commune_insee="29232")
    assert (await refusal(redeem(session, keyring, quimper, scene.cheques[0].serial))).code == (
        "site_not_eligible"
    )
    await redeem(session, keyring, brest, scene.cheques[0].serial)


async def test_an_unknown_serial_is_not_found_and_so_is_a_genuine_token_for_no_cheque(
    session: AsyncSession, keyring: Keyring, site: Organisation
) -> None:
    assert (await refusal(redeem(session, keyring, site, new_serial()))).code == (
        "cheque_not_found"
    )
    token = keyring.sign(ChequeClaims(new_serial(), 1, 1000, date(2026, 1, 31)))
    assert (await refusal(redeem(session, keyring, site, token))).code == "cheque_not_found"


async def test_a_token_that_does_not_match_its_cheque_row_is_refused(
    session: AsyncSession, keyring: Keyring, scene: Scene, site: Organisation
) -> None:
    cheque = scene.cheques[0]
    for claims in (
        ChequeClaims(cheque.serial, scene.programme_id, 5000, cheque.redeem_until),
        ChequeClaims(cheque.serial, scene.programme_id + 1000, 1000, cheque.redeem_until),
    ):
        error = await refusal(redeem(session, keyring, site, keyring.sign(claims)))
        assert error.code == "invalid_token"
    assert await status_of(session, cheque.id) == ChequeStatus.active
    await redeem(session, keyring, site, cheque.token)


async def test_a_cancelled_cheque_is_refused(
    session: AsyncSession, keyring: Keyring, scene: Scene, site: Organisation
) -> None:
    cheque = scene.cheques[0]
    booklet_id = await session.scalar(select(Cheque.booklet_id).where(Cheque.id == cheque.id))
    agent = Actor(user_id=None, organisation_id=scene.issuer.id, role=Role.issuer_agent)  # type: ignore[arg-type]
    await issuance.cancel_booklet(session, actor=agent, ref=booklet_id, reason="perdu", now=NOW)  # type: ignore[arg-type]
    assert (await refusal(redeem(session, keyring, site, cheque.serial))).code == (
        "cheque_cancelled"
    )


async def test_an_expired_cheque_is_refused_by_status_and_by_date(
    session: AsyncSession, keyring: Keyring, scene: Scene, site: Organisation
) -> None:
    # After redeem_until, before the expiry job ran: refused by the date.
    late = datetime(2026, 2, 1, 9, tzinfo=UTC)
    error = await refusal(redeem(session, keyring, site, scene.cheques[0].serial, now=late))
    assert error.code == "cheque_expired"
    # Expired by the job (its status), even on a day still in range.
    await session.execute(
        text("UPDATE cheque SET status = 'expired' WHERE id = :id"), {"id": scene.cheques[1].id}
    )
    error = await refusal(redeem(session, keyring, site, scene.cheques[1].serial))
    assert error.code == "cheque_expired"


async def test_a_cheque_still_in_stock_is_not_active(
    session: AsyncSession, keyring: Keyring, scene: Scene, site: Organisation
) -> None:
    agent = Actor(user_id=None, organisation_id=scene.issuer.id, role=Role.issuer_agent)  # type: ignore[arg-type]
    order = await issuance.order_booklets(
        session,
        keyring=keyring,
        actor=agent,
        programme_id=scene.programme_id,
        issuer_id=scene.issuer.id,
        booklets=1,
        size=5,
        now=datetime(2025, 1, 20, tzinfo=UTC),
    )  # type: ignore[arg-type]
    serial = await session.scalar(
        text(
            "SELECT c.serial FROM cheque c JOIN booklet b ON b.id = c.booklet_id "
            "WHERE b.order_id = :o LIMIT 1"
        ),
        {"o": order.id},
    )
    assert (await refusal(redeem(session, keyring, site, serial))).code == "cheque_not_active"


# ------------------------------------------------------------------------------ Paris days


async def test_validity_is_judged_on_the_paris_day_at_both_ends(
    session: AsyncSession, keyring: Keyring, site: Organisation
) -> None:
    scene = await make_scene(
        session,
        keyring,
        cheques=3,
        now=datetime(2025, 1, 10, tzinfo=UTC),
        valid_from=date(2025, 2, 1),
        valid_until=date(2025, 12, 31),
        redeem_until=date(2026, 1, 31),
    )
    # 22:59 UTC on 31 January is 23:59 in Paris, still January: not yet valid.
    error = await refusal(
        redeem(
            session,
            keyring,
            site,
            scene.cheques[0].serial,
            now=datetime(2025, 1, 31, 22, 59, tzinfo=UTC),
        )
    )
    assert error.code == "cheque_not_yet_valid"
    assert error.details == {"valid_from": date(2025, 2, 1)}
    # 23:30 UTC on 31 January is 00:30 on 1 February in Paris: valid.
    await redeem(
        session,
        keyring,
        site,
        scene.cheques[0].serial,
        now=datetime(2025, 1, 31, 23, 30, tzinfo=UTC),
    )
    # Last day, 31 January 2026 in Paris: 22:59 UTC is still the 31st, 23:00 UTC is 1 February.
    await redeem(
        session,
        keyring,
        site,
        scene.cheques[1].serial,
        now=datetime(2026, 1, 31, 22, 59, tzinfo=UTC),
    )
    error = await refusal(
        redeem(
            session,
            keyring,
            site,
            scene.cheques[2].serial,
            now=datetime(2026, 1, 31, 23, 0, tzinfo=UTC),
        )
    )
    assert error.code == "cheque_expired"


# ------------------------------------------------------------------------------------- check


async def test_checking_says_whether_a_cheque_is_redeemable_here_and_why_not(
    session: AsyncSession, keyring: Keyring, scene: Scene, site: Organisation
) -> None:
    cheque = scene.cheques[0]
    seen = await svc.check_cheque(
        session,
        keyring=keyring,
        site_id=site.id,
        code=cheque.token,  # type: ignore[arg-type]
        now=NOW,
    )
    assert (seen.serial, seen.status, seen.value_cents, seen.redeemable, seen.reason) == (
        cheque.serial,
        ChequeStatus.active,
        1000,
        True,
        None,
    )
    assert await status_of(session, cheque.id) == ChequeStatus.active
    done = await redeem(session, keyring, site, cheque.serial)
    seen = await svc.check_cheque(
        session,
        keyring=keyring,
        site_id=site.id,  # type: ignore[arg-type]
        code=cheque.serial,
        now=NOW,
    )
    assert (seen.redeemable, seen.reason, seen.redeemed_at) == (
        False,
        "cheque_already_redeemed",
        done.redeemed_at,
    )
    far = await make_org(session, OrganisationKind.site, commune_insee="75056")
    seen = await svc.check_cheque(
        session,
        keyring=keyring,
        site_id=far.id,  # type: ignore[arg-type]
        code=scene.cheques[1].serial,
        now=NOW,
    )
    assert (seen.redeemable, seen.reason) == (False, "site_not_eligible")


# ------------------------------------------------------------------------------------ reversal


async def reverse(
    session: AsyncSession, site: Organisation, redemption_id: int, now: datetime
) -> svc.ReversalRead:
    return await svc.reverse_redemption(
        session,
        site_id=site.id,
        redemption_id=redemption_id,  # type: ignore[arg-type]
        now=now,
    )


async def test_a_site_reverses_its_redemption_within_24_hours_and_the_cheque_is_active_again(
    session: AsyncSession, keyring: Keyring, scene: Scene, site: Organisation
) -> None:
    cheque = scene.cheques[0]
    pid = scene.programme_id
    before = await ledger.balance(session, f"programme:{pid}:outstanding")
    done = await redeem(session, keyring, site, cheque.serial)
    undone = await reverse(session, site, done.id, NOW + timedelta(hours=23))
    assert (undone.id, undone.cheque_serial, undone.reversed_at) == (
        done.id,
        cheque.serial,
        NOW + timedelta(hours=23),
    )
    assert await status_of(session, cheque.id) == ChequeStatus.active
    assert await ledger.balance(session, f"programme:{pid}:outstanding") == before
    assert await ledger.balance(session, f"site:{site.id}:payable") == 0
    assert await ledger.get_entry(session, f"reverse:{done.id}") is not None
    error = await refusal(reverse(session, site, done.id, NOW + timedelta(hours=23, minutes=1)))
    assert error.code == "redemption_already_reversed"
    # The cheque can be redeemed again: a new redemption, a new entry.
    again = await redeem(session, keyring, site, cheque.serial, now=NOW + timedelta(days=1))
    assert again.id != done.id
    assert await ledger.balance(session, f"site:{site.id}:payable") == 1000


async def test_a_reversal_after_24_hours_is_refused(
    session: AsyncSession, keyring: Keyring, scene: Scene, site: Organisation
) -> None:
    done = await redeem(session, keyring, site, scene.cheques[0].serial)
    error = await refusal(reverse(session, site, done.id, NOW + timedelta(hours=25)))
    assert error.code == "reversal_window_closed"
    assert await status_of(session, scene.cheques[0].id) == ChequeStatus.redeemed


async def test_a_redemption_in_a_clearing_batch_cannot_be_reversed(
    session: AsyncSession, keyring: Keyring, scene: Scene, site: Organisation
) -> None:
    done = await redeem(session, keyring, site, scene.cheques[0].serial)
    await session.execute(
        text("UPDATE redemption SET batch_id = 1 WHERE id = :id"), {"id": done.id}
    )
    error = await refusal(reverse(session, site, done.id, NOW + timedelta(hours=1)))
    assert error.code == "redemption_in_batch"


async def test_another_site_cannot_see_nor_reverse_a_redemption(
    session: AsyncSession, keyring: Keyring, scene: Scene, site: Organisation
) -> None:
    done = await redeem(session, keyring, site, scene.cheques[0].serial)
    other = await make_org(session, OrganisationKind.site)
    error = await refusal(reverse(session, other, done.id, NOW + timedelta(hours=1)))
    assert (error.code, error.details) == ("not_found", {"redemption_id": done.id})
    error = await refusal(reverse(session, other, 2**62, NOW))
    assert error.code == "not_found"


# ------------------------------------------------------------------------------------ offline


def scan(code: str, at: datetime, service: Service = Service.naviguer_web) -> svc.OfflineScanIn:
    return svc.OfflineScanIn(code=code, service=service, demarche_family=None, scanned_at=at)


async def test_an_offline_batch_decides_each_scan_alone_and_reports_double_scans_as_conflicts(
    session: AsyncSession, keyring: Keyring, scene: Scene, site: Organisation
) -> None:
    c = scene.cheques
    earlier = await redeem(session, keyring, site, c[3].serial, now=NOW - timedelta(days=2))
    elsewhere = await make_org(session, OrganisationKind.site, commune_insee="35047")
    await redeem(session, keyring, elsewhere, c[4].serial, now=NOW - timedelta(days=2))
    t = NOW - timedelta(days=1)
    scans = [
        scan(c[0].token, t + timedelta(minutes=5)),  # 0 accepted… but scanned after item 1
        scan(c[0].serial, t),  # 1 the earlier scan of c0: accepted
        scan(c[1].token, t),  # 2 accepted
        scan(c[3].serial, t),  # 3 this site redeemed it before: conflict
        scan(c[4].serial, t),  # 4 another site redeemed it: refused, no site given
        scan(new_serial(), t),  # 5 not found
        scan("PN-0000-0000-0000-1", t),  # 6 typo
        scan(c[2].serial, NOW - timedelta(days=8)),  # 7 too old
        scan(c[2].serial, NOW + timedelta(minutes=10)),  # 8 in the future
        scan(c[2].serial, NOW + timedelta(minutes=4)),  # 9 small clock skew: accepted
        scan(c[1].serial, t + timedelta(hours=1)),  # 10 second scan of c1: conflict
    ]
    out = await svc.redeem_offline(
        session,
        keyring=keyring,
        site_id=site.id,
        user_id=None,  # type: ignore[arg-type]
        scans=scans,
        now=NOW,
    )
    assert [o.status for o in out] == [
        "conflict",
        "accepted",
        "accepted",
        "conflict",
        "refused",
        "refused",
        "refused",
        "refused",
        "refused",
        "accepted",
        "conflict",
    ]
    codes = [o.error.code if o.error else None for o in out]
    assert codes == [
        "cheque_already_redeemed",
        None,
        None,
        "cheque_already_redeemed",
        "cheque_already_redeemed",
        "cheque_not_found",
        "serial_check_failed",
        "invalid_scanned_at",
        "invalid_scanned_at",
        None,
        "cheque_already_redeemed",
    ]
    assert out[0].error.details["duplicate_of"] == out[1].redemption.id  # type: ignore[union-attr]
    assert out[10].error.details["duplicate_of"] == out[2].redemption.id  # type: ignore[union-attr]
    assert out[3].error.details["duplicate_of"] == earlier.id  # type: ignore[union-attr]
    assert set(out[4].error.details) == {"redeemed_at"}  # type: ignore[union-attr]
    rows = (
        await session.execute(
            select(
                Redemption.cheque_id,
                Redemption.scanned_at,
                Redemption.redeemed_at,
                Redemption.service,
            )
            .where(Redemption.id.in_([out[i].redemption.id for i in (1, 2, 9)]))  # type: ignore[union-attr]
            .order_by(Redemption.cheque_id)
        )
    ).all()
    assert [(r.cheque_id, r.scanned_at, r.redeemed_at) for r in rows] == sorted(
        [(c[0].id, t, NOW), (c[1].id, t, NOW), (c[2].id, NOW + timedelta(minutes=4), NOW)]
    )
    for i in (1, 2, 9):
        assert await ledger.get_entry(session, f"redeem:{out[i].redemption.id}") is not None  # type: ignore[union-attr]
    assert await ledger.balance(session, f"site:{site.id}:payable") == 4000


async def test_an_offline_scan_is_judged_on_the_paris_day_it_was_scanned(
    session: AsyncSession, keyring: Keyring, site: Organisation
) -> None:
    scene = await make_scene(
        session,
        keyring,
        cheques=3,
        now=datetime(2025, 1, 10, tzinfo=UTC),
        valid_from=date(2025, 1, 10),
        valid_until=date(2025, 1, 31),
        redeem_until=date(2025, 1, 31),
    )
    now = datetime(2025, 2, 3, 8, tzinfo=UTC)  # synced after the last day
    scans = [
        scan(scene.cheques[0].serial, datetime(2025, 1, 31, 22, 59, tzinfo=UTC)),  # 31/01 Paris
        scan(scene.cheques[1].serial, datetime(2025, 1, 31, 23, 30, tzinfo=UTC)),  # 01/02 Paris
    ]
    out = await svc.redeem_offline(
        session,
        keyring=keyring,
        site_id=site.id,
        user_id=None,  # type: ignore[arg-type]
        scans=scans,
        now=now,
    )
    assert [o.status for o in out] == ["accepted", "refused"]
    assert out[1].error.code == "cheque_expired"  # type: ignore[union-attr]


async def test_the_scans_of_one_cheque_in_one_call_are_decided_in_the_order_they_were_made(
    session: AsyncSession, keyring: Keyring, site: Organisation
) -> None:
    """One call decides all its scans at once (pass_redeem is set-based), yet as if one after
    the other: per cheque, by scanned_at. The earlier scan is judged on its own day even when
    a later one redeems the cheque; a scan after the one that redeemed it finds it redeemed
    (by this site offline: a conflict naming that redemption; online, by another site: a plain
    refusal that says when, not where)."""
    scene = await make_scene(session, keyring, cheques=3, now=datetime(2025, 1, 9, 8, tzinfo=UTC),
                             valid_from=date(2025, 1, 10), valid_until=date(2025, 1, 31),
                             redeem_until=date(2025, 1, 31))
    c = scene.cheques
    now = datetime(2025, 1, 12, 8, tzinfo=UTC)
    out = await svc.redeem_offline(
        session, keyring=keyring, site_id=site.id, user_id=None,  # type: ignore[arg-type]
        scans=[
            scan(c[0].token, datetime(2025, 1, 11, 10, tzinfo=UTC)),  # 0 after item 1: redeems
            scan(c[0].serial, datetime(2025, 1, 9, 22, tzinfo=UTC)),  # 1 09/01 Paris: too early
            scan(c[1].serial, datetime(2025, 1, 11, 9, tzinfo=UTC)),  # 2 after item 3: conflict
            scan(c[1].token, datetime(2025, 1, 10, 9, tzinfo=UTC)),  # 3 redeems
        ],
        now=now)
    assert [(o.status, o.error.code if o.error else None) for o in out] == [
        ("accepted", None), ("refused", "cheque_not_yet_valid"),
        ("conflict", "cheque_already_redeemed"), ("accepted", None)]
    assert out[2].error.details == {  # type: ignore[union-attr]
        "redeemed_at": now, "duplicate_of": out[3].redemption.id}  # type: ignore[union-attr]
    other = await make_org(session, OrganisationKind.site, commune_insee="35047")
    online = await svc.redeem_online(session, keyring=keyring, now=now, scans=[
        svc.OnlineScanIn(site.id, None, c[2].serial, Service.naviguer_web, None),  # type: ignore[arg-type]
        svc.OnlineScanIn(other.id, None, c[2].token, Service.naviguer_web, None),  # type: ignore[arg-type]
    ])
    assert isinstance(online[0], svc.RedemptionRead) and online[0].site_id == site.id
    assert isinstance(online[1], DomainError) and online[1].code == "cheque_already_redeemed"
    assert online[1].details == {"redeemed_at": now}
    ids = [c[i].id for i in range(3)]
    counts = dict((await session.execute(text(
        "SELECT cheque_id, count(*) FROM redemption WHERE cheque_id = ANY(:ids) "
        "GROUP BY cheque_id"), {"ids": ids})).all())
    assert counts == {i: 1 for i in ids}
    assert await ledger.balance(session, f"site:{site.id}:payable") == 3000


async def test_an_offline_batch_from_a_site_that_is_not_qualified_is_refused_item_by_item(
    session: AsyncSession, keyring: Keyring, scene: Scene
) -> None:
    pending = await make_org(session, OrganisationKind.site, qualified=False)
    out = await svc.redeem_offline(
        session,
        keyring=keyring,
        site_id=pending.id,
        user_id=None,  # type: ignore[arg-type]
        scans=[scan(scene.cheques[0].serial, NOW), scan("junk", NOW)],
        now=NOW,
    )
    assert [(o.status, o.error.code) for o in out] == [  # type: ignore[union-attr]
        ("refused", "site_not_qualified"),
        ("refused", "invalid_serial"),
    ]


# ------------------------------------------------------------------------------------ listing


async def test_a_site_lists_its_redemptions_newest_first_by_paris_day_and_page(
    session: AsyncSession, keyring: Keyring, scene: Scene, site: Organisation
) -> None:
    other = await make_org(session, OrganisationKind.site)
    days = [datetime(2025, 3, d, 22, 30, tzinfo=UTC) for d in (1, 2, 3, 4, 5)]  # 23:30 Paris
    mine = [
        await redeem(session, keyring, site, scene.cheques[i].serial, now=at)
        for i, at in enumerate(days)
    ]
    await redeem(session, keyring, other, scene.cheques[5].serial, now=days[2])
    now = days[4] + timedelta(hours=1)
    page = await redemption_listing.list_redemptions(
        session,
        site_id=site.id,
        now=now,
        limit=2,  # type: ignore[arg-type]
        viewer_site_id=site.id,
    )
    assert [i.id for i in page.items] == [mine[4].id, mine[3].id]
    assert [i.reversible for i in page.items] == [True, False]
    assert page.items[0].cheque_serial == scene.cheques[4].serial
    seen = [i.id for i in page.items]
    while page.next_cursor:
        page = await redemption_listing.list_redemptions(
            session,
            site_id=site.id,
            now=now,
            limit=2,  # type: ignore[arg-type]
            cursor=page.next_cursor,
        )
        seen += [i.id for i in page.items]
    assert seen == [r.id for r in reversed(mine)]
    by_page = await redemption_listing.list_redemptions(
        session, site_id=site.id, now=now, limit=2, page=3  # type: ignore[arg-type]
    )
    assert [i.id for i in by_page.items] == [mine[0].id]
    # 22:30 UTC on 2 March is 23:30 on 2 March in Paris: the days 2 to 3 hold two of them.
    window = await redemption_listing.list_redemptions(
        session,
        site_id=site.id,
        now=now,  # type: ignore[arg-type]
        from_day=date(2025, 3, 2),
        to_day=date(2025, 3, 3),
    )
    assert [i.id for i in window.items] == [mine[2].id, mine[1].id]
    everyone = await redemption_listing.list_redemptions(
        session, site_id=None, now=now, from_day=date(2025, 3, 3), to_day=date(2025, 3, 3)
    )
    assert {i.site_id for i in everyone.items} == {site.id, other.id}
    with pytest.raises(DomainError) as caught:
        await redemption_listing.list_redemptions(
            session, site_id=site.id, now=now, cursor="not a cursor!"  # type: ignore[arg-type]
        )
    assert caught.value.code == "invalid_cursor"


async def test_an_offline_token_is_trusted_only_if_it_is_the_one_issued_or_verifies(
    session: AsyncSession, keyring: Keyring, scene: Scene, site: Organisation, tmp_path: object
) -> None:
    c = scene.cheques
    claims = [ChequeClaims(x.serial, scene.programme_id, x.value_cents, x.redeem_until) for x in c]
    thief = Keyring.load_or_create(tmp_path / "thief")  # type: ignore[operator]
    keyring.rotate()  # a token signed now differs from the printed one, and still verifies
    resigned = keyring.sign(claims[1])
    assert resigned != c[1].token
    wrong_value = keyring.sign(ChequeClaims(c[3].serial, scene.programme_id, 1, c[3].redeem_until))
    t = NOW - timedelta(hours=1)
    out = await svc.redeem_offline(
        session,
        keyring=keyring,
        site_id=site.id,  # type: ignore[arg-type]
        user_id=None,
        scans=[
            scan(c[0].token, t),  # the printed token
            scan(resigned, t),  # another genuine token of the cheque
            scan(thief.sign(claims[2]), t),  # right serial, forged signature
            scan(wrong_value, t),  # genuine signature, claims that do not match the row
            scan(c[4].token[:-2] + "AA" if c[4].token[-2:] != "AA" else c[4].token[:-2] + "BB", t),
        ],
        now=NOW,
    )
    assert [(o.status, o.error.code if o.error else None) for o in out] == [
        ("accepted", None),
        ("accepted", None),
        ("refused", "invalid_token"),
        ("refused", "invalid_token"),
        ("refused", "invalid_token"),
    ]
    assert await status_of(session, c[2].id) == ChequeStatus.active


# ------------------------------------------------------------------------------------ audit


async def test_the_audit_finds_cheques_and_entries_that_disagree_with_redemptions(
    session: AsyncSession, keyring: Keyring, scene: Scene, site: Organisation
) -> None:
    c = scene.cheques
    pid = scene.programme_id
    await redeem(session, keyring, site, c[0].serial)
    undone = await redeem(session, keyring, site, c[1].serial)
    await reverse(session, site, undone.id, NOW + timedelta(hours=1))
    offline = await svc.redeem_offline(
        session,
        keyring=keyring,
        site_id=site.id,
        user_id=None,  # type: ignore[arg-type]
        scans=[scan(c[2].token, NOW - timedelta(hours=1))],
        now=NOW,
    )
    assert offline[0].status == "accepted"
    assert await svc.audit_redemptions(session, programme_id=pid) == []

    # A cheque put back to active behind the redemption's back, a redemption whose value
    # was changed, and an entry posted under a redemption's key with other lines.
    await session.execute(text("UPDATE cheque SET status = 'active' WHERE id = :i"), {"i": c[0].id})
    await session.execute(
        text("UPDATE redemption SET value_cents = 500 WHERE id = :i"),
        {"i": offline[0].redemption.id},
    )  # type: ignore[union-attr]
    await session.execute(
        text("UPDATE cheque SET status = 'redeemed' WHERE id = :i"), {"i": c[3].id}
    )
    found = await svc.audit_redemptions(session, programme_id=pid)
    kinds = sorted((d.kind, d.details.get("cheque_id") or d.details.get("key")) for d in found)
    rid = offline[0].redemption.id  # type: ignore[union-attr]
    assert kinds == sorted(
        [
            ("redemption_of_unredeemed_cheque", c[0].id),
            ("cheque_redeemed_without_redemption", c[3].id),
            ("redemption_differs_from_cheque", c[2].id),
            ("redemption_entry_missing", f"redeem:{rid}"),
            ("redemption_entry_missing", f"redeem:{rid}"),
            ("redemption_entry_unexpected", f"redeem:{rid}"),
            ("redemption_entry_unexpected", f"redeem:{rid}"),
        ]
    )
    assert all(d.message for d in found)


async def test_the_audit_names_a_cheque_redeemed_twice_when_the_unique_index_is_gone(
    session: AsyncSession, keyring: Keyring, scene: Scene, site: Organisation
) -> None:
    from clearing.audit import run_audit

    cheque = scene.cheques[0]
    first = await redeem(session, keyring, site, cheque.serial)
    # As a superuser could (the test's transaction rolls it all back): the index gone, a
    # second live redemption of the same cheque.
    await session.execute(text("DROP INDEX uq_redemption_live_cheque"))
    second = await session.scalar(text(
        "INSERT INTO redemption (cheque_id, programme_id, site_id, user_id, value_cents, "
        "service, redeemed_at) SELECT cheque_id, programme_id, site_id, user_id, value_cents, "
        "service, redeemed_at FROM redemption WHERE id = :id RETURNING id"), {"id": first.id})

    found = await svc.audit_double_redemptions(session, programme_id=scene.programme_id)
    assert [(d.kind, d.details) for d in found] == [(
        "cheque_redeemed_twice",
        {"cheque_id": cheque.id, "serial": cheque.serial, "redemption_ids": [first.id, second]},
    )]
    assert cheque.serial in found[0].message
    whole = await run_audit(session)
    assert any(d.kind == "cheque_redeemed_twice" and d.details["serial"] == cheque.serial
               for d in whole.differences)
