"""Redemption over HTTP: the contract of §7 (statuses, codes, bodies), idempotency, junk input,
roles, rate limits, offline batches, listing and reversal."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from api.ratelimit import RateLimits, TokenBucketLimiter
from kit.clock import utcnow
from kit.settings import Settings
from pass_ import accounts, issuance
from pass_.codes import new_serial
from pass_.enums import OrganisationKind, Qualification, Role
from pass_.models import Cheque, IdempotencyRecord, Redemption
from pass_.programmes import Actor as DomainActor
from pass_.tokens import ChequeClaims, Keyring
from tests.factories import Actor, bearer, make_actor
from tests.pass_.redemption_factories import Scene, issue, make_scene, make_site

REDEEM = "/api/v1/redemptions"


@pytest.fixture
async def scene(session: AsyncSession, app: Any) -> Scene:
    scene = await make_scene(session, app.state.keyring, cheques=10)
    await session.commit()  # a refused request rolls back its own work, not the test's data
    return scene


@pytest.fixture
async def site(session: AsyncSession, app: Any) -> Actor:
    actor = await make_site(session, app)
    await session.commit()
    return actor


def key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


async def post_redeem(
    client: httpx.AsyncClient,
    who: Actor,
    code: str,
    headers: dict[str, str] | None = None,
    **body: Any,
) -> httpx.Response:
    payload = {"code": code, "service": "realiser_demarche", "demarche_family": "caf", **body}
    return await client.post(REDEEM, json=payload, headers={**who.headers, **(headers or key())})


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    assert error["message"]
    return error  # type: ignore[no-any-return]


async def cheque_status(session: AsyncSession, cheque_id: int) -> str:
    return str(await session.scalar(select(Cheque.status).where(Cheque.id == cheque_id)))


# ------------------------------------------------------------------------------- redeem


async def test_redeeming_answers_201_with_the_redemption(
    client: httpx.AsyncClient, scene: Scene, site: Actor, session: AsyncSession
) -> None:
    cheque = scene.cheques[0]
    response = await post_redeem(client, site, cheque.token)
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"id", "cheque_serial", "value_cents", "redeemed_at", "site_id"}
    assert (body["cheque_serial"], body["value_cents"], body["site_id"]) == (
        cheque.serial,
        1000,
        site.org.id,
    )
    assert await cheque_status(session, cheque.id) == "redeemed"


async def test_a_retry_with_the_same_key_replays_the_first_answer_byte_for_byte(
    client: httpx.AsyncClient, scene: Scene, site: Actor, session: AsyncSession
) -> None:
    headers = key()
    first = await post_redeem(client, site, scene.cheques[0].serial, headers)
    assert first.status_code == 201
    again = await post_redeem(client, site, scene.cheques[0].serial, headers)
    assert (again.status_code, again.content) == (201, first.content)
    assert again.headers["Idempotent-Replayed"] == "true"
    count = await session.scalar(
        text("SELECT count(*) FROM redemption WHERE cheque_id = :c"), {"c": scene.cheques[0].id}
    )
    assert count == 1


async def test_the_same_key_for_another_request_is_an_idempotency_conflict(
    client: httpx.AsyncClient, scene: Scene, site: Actor, session: AsyncSession
) -> None:
    headers = key()
    assert (await post_redeem(client, site, scene.cheques[0].serial, headers)).status_code == 201
    other = await post_redeem(client, site, scene.cheques[1].serial, headers)
    assert_error(other, 409, "idempotency_conflict")
    assert await cheque_status(session, scene.cheques[1].id) == "active"
    same_code_other_service = await post_redeem(
        client, site, scene.cheques[0].serial, headers, service="creer_courriel"
    )
    assert_error(same_code_other_service, 409, "idempotency_conflict")


async def test_a_failed_request_replays_its_failure_even_once_the_cause_is_gone(
    client: httpx.AsyncClient, scene: Scene, session: AsyncSession, app: Any
) -> None:
    pending = await make_site(session, app, qualified=False)
    await session.commit()
    headers = key()
    first = await post_redeem(client, pending, scene.cheques[0].serial, headers)
    assert_error(first, 403, "site_not_qualified")
    await accounts.set_qualification(
        session, site_id=pending.org.id, to=Qualification.qualified, now=utcnow()
    )  # type: ignore[arg-type]
    await session.commit()
    again = await post_redeem(client, pending, scene.cheques[0].serial, headers)
    assert (again.status_code, again.content) == (403, first.content)
    assert await cheque_status(session, scene.cheques[0].id) == "active"
    fresh = await post_redeem(client, pending, scene.cheques[0].serial)
    assert fresh.status_code == 201


async def test_idempotency_keys_are_scoped_per_user(
    client: httpx.AsyncClient, scene: Scene, site: Actor, session: AsyncSession, app: Any
) -> None:
    colleague = await make_actor(session, app, OrganisationKind.site, org=site.org)
    await session.commit()
    headers = key()
    assert (await post_redeem(client, site, scene.cheques[0].serial, headers)).status_code == 201
    mine = await post_redeem(client, colleague, scene.cheques[1].serial, headers)
    assert mine.status_code == 201


@pytest.mark.parametrize("value", [None, "", "a" * 201, "clé avec accent", "two words"])
async def test_an_idempotency_key_is_required_and_checked(
    client: httpx.AsyncClient,
    scene: Scene,
    site: Actor,
    session: AsyncSession,
    value: str | None,
) -> None:
    headers = {} if value is None else {"Idempotency-Key": value}
    payload = {"code": scene.cheques[0].serial, "service": "naviguer_web"}
    response = await client.post(
        REDEEM,
        json=payload,
        headers={**site.headers, **{k: v.encode() for k, v in headers.items()}},
    )  # type: ignore[dict-item]
    assert_error(response, 422, "invalid_idempotency_key")
    assert await cheque_status(session, scene.cheques[0].id) == "active"


# ---------------------------------------------------------------------------- refusals


async def test_every_refusal_has_the_status_and_code_of_the_contract(
    client: httpx.AsyncClient, scene: Scene, site: Actor, session: AsyncSession, app: Any
) -> None:
    keyring: Keyring = app.state.keyring
    c = scene.cheques
    [lost] = await issue(session, scene, 1)
    agent = DomainActor(user_id=None, organisation_id=scene.issuer.id, role=Role.issuer_agent)  # type: ignore[arg-type]
    booklet_id = await session.scalar(select(Cheque.booklet_id).where(Cheque.id == lost.id))
    await issuance.cancel_booklet(
        session,
        actor=agent,
        ref=booklet_id,
        reason="volé",  # type: ignore[arg-type]
        now=utcnow(),
    )
    await session.execute(
        text("UPDATE cheque SET status = 'expired' WHERE id = :i"), {"i": c[1].id}
    )
    await session.execute(
        text("UPDATE cheque SET status = 'in_stock' WHERE id = :i"), {"i": c[2].id}
    )
    await session.execute(
        text("UPDATE cheque SET valid_from = current_date + 30 WHERE id = :i"), {"i": c[3].id}
    )
    far = await make_site(session, app, commune_insee="75056")
    pending = await make_site(session, app, qualified=False)
    await session.commit()
    done = await post_redeem(client, site, c[0].serial)
    assert done.status_code == 201
    wrong_value = keyring.sign(ChequeClaims(c[4].serial, scene.programme_id, 99, c[4].redeem_until))
    unknown_token = keyring.sign(
        ChequeClaims(new_serial(), scene.programme_id, 1000, c[4].redeem_until)
    )
    cases = [
        (site, c[0].serial, 409, "cheque_already_redeemed"),
        (site, c[1].serial, 410, "cheque_expired"),
        (site, lost.serial, 410, "cheque_cancelled"),
        (site, c[2].serial, 410, "cheque_not_active"),
        (site, c[3].serial, 422, "cheque_not_yet_valid"),
        (site, wrong_value, 422, "invalid_token"),
        (site, c[4].token[:-4], 422, "invalid_token"),
        (site, unknown_token, 404, "cheque_not_found"),
        (site, new_serial(), 404, "cheque_not_found"),
        (
            site,
            c[4].serial[:-1] + ("0" if c[4].serial[-1] != "0" else "1"),
            422,
            "serial_check_failed",
        ),
        (site, "PN-1234", 422, "invalid_serial"),
        (far, c[4].serial, 403, "site_not_eligible"),
        (pending, c[4].serial, 403, "site_not_qualified"),
    ]
    for who, code, status, error_code in cases:
        error = assert_error(await post_redeem(client, who, code), status, error_code)
        if error_code == "cheque_already_redeemed":
            # When, never where.
            assert set(error["details"]) == {"redeemed_at"}
            assert datetime.fromisoformat(error["details"]["redeemed_at"]) == (
                datetime.fromisoformat(done.json()["redeemed_at"])
            )
    assert await cheque_status(session, c[4].id) == "active"


JUNK = [
    "",
    " ",
    "\t\n",
    "x" * 5000,
    "\x00",
    "PN-\x00\x01\x02-\x1b[31m",
    "'; DROP TABLE cheque; --",
    "' OR '1'='1",
    "PN1:' OR 1=1 --",
    "ÉÀÇ-ÉÀÇ-ÉÀÇ",
    "ＰＮ－１２３４",  # full-width look-alikes
    "😀" * 40,
    "\u202egnp.exe",
    "../../etc/passwd",
    "..%2F..%2Fetc%2Fpasswd",
    "/",
    "%00",
    "<script>alert(1)</script>",
    "PN1:" + "A" * 136,
    "PN1:" + "a" * 500,
    "pn1:" + "0" * 136,
    "null",
    "{}",
]


@pytest.mark.parametrize("junk", JUNK, ids=range(len(JUNK)))
async def test_junk_codes_get_a_4xx_with_a_code_never_a_500(
    client: httpx.AsyncClient, site: Actor, app: Any, junk: str
) -> None:
    checked = await client.get("/api/v1/cheques/" + quote(junk, safe=""), headers=site.headers)
    redeemed = await post_redeem(client, site, junk)
    batch = await client.post(
        f"{REDEEM}/batch",
        headers=site.headers,
        json={
            "items": [
                {
                    "code": junk,
                    "service": "naviguer_web",
                    "scanned_at": utcnow().isoformat(),
                    "idempotency_key": str(uuid.uuid4()),
                }
            ]
        },
    )
    for response in (checked, redeemed):
        assert 400 <= response.status_code < 500, response.text
        assert response.json()["error"]["code"]
    assert batch.status_code in (200, 422), batch.text
    if batch.status_code == 200:
        [result] = batch.json()["results"]
        assert result["status"] == "refused" and result["error"]["code"]


async def test_a_forged_token_is_refused_on_check_and_redeem(
    client: httpx.AsyncClient, scene: Scene, site: Actor, tmp_path: Any
) -> None:
    cheque = scene.cheques[0]
    forged = Keyring.load_or_create(tmp_path / "thief").sign(
        ChequeClaims(cheque.serial, scene.programme_id, 1000, cheque.redeem_until)
    )
    assert_error(
        await client.get(f"/api/v1/cheques/{forged}", headers=site.headers), 422, "invalid_token"
    )
    assert_error(await post_redeem(client, site, forged), 422, "invalid_token")


# ------------------------------------------------------------------------------- check


async def test_checking_a_code_tells_without_redeeming(
    client: httpx.AsyncClient, scene: Scene, site: Actor, session: AsyncSession
) -> None:
    cheque = scene.cheques[0]
    typed = cheque.serial.lower().replace("-", " ")
    response = await client.get(f"/api/v1/cheques/{quote(typed)}", headers=site.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert {k: body[k] for k in ("serial", "status", "value_cents", "redeemable")} == {
        "serial": cheque.serial,
        "status": "active",
        "value_cents": 1000,
        "redeemable": True,
    }
    assert body["reason"] is None
    assert await cheque_status(session, cheque.id) == "active"
    await post_redeem(client, site, cheque.token)
    body = (await client.get(f"/api/v1/cheques/{cheque.token}", headers=site.headers)).json()
    assert (body["status"], body["redeemable"], body["reason"]) == (
        "redeemed",
        False,
        "cheque_already_redeemed",
    )
    assert_error(
        await client.get(f"/api/v1/cheques/{new_serial()}", headers=site.headers),
        404,
        "cheque_not_found",
    )


# ------------------------------------------------------------------------------- roles


async def test_only_site_mediators_check_and_redeem(
    client: httpx.AsyncClient, scene: Scene, session: AsyncSession, app: Any
) -> None:
    code = scene.cheques[0].serial
    for kind in (OrganisationKind.issuer, OrganisationKind.financer, OrganisationKind.operator):
        who = await make_actor(session, app, kind)
        await session.commit()
        assert_error(
            await client.get(f"/api/v1/cheques/{code}", headers=who.headers), 403, "forbidden"
        )
        assert_error(await post_redeem(client, who, code), 403, "forbidden")
        assert_error(
            await client.post(f"{REDEEM}/1/reverse", headers=who.headers), 403, "forbidden"
        )
    assert_error(await client.get(f"/api/v1/cheques/{code}"), 401, "unauthenticated")
    assert_error(
        await client.post(REDEEM, json={"code": code, "service": "naviguer_web"}, headers=key()),
        401,
        "unauthenticated",
    )
    assert await cheque_status(session, scene.cheques[0].id) == "active"


# ------------------------------------------------------------------------------- rate limits


def test_a_token_bucket_refills_at_its_rate_and_lets_a_big_batch_overdraw_once() -> None:
    now = [0.0]
    bucket = TokenBucketLimiter(rate_per_minute=60, burst=3, clock=lambda: now[0])
    assert [bucket.take("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take("k") == pytest.approx(1.0)  # one token a second
    now[0] += 1.0
    assert bucket.take("k") == 0.0
    assert bucket.take("other") == 0.0  # keys are independent
    now[0] += 10.0  # refilled to the burst, not beyond
    assert bucket.take("k", cost=500) == 0.0  # a big batch passes once the bucket is full…
    assert bucket.take("k") == pytest.approx(498.0)  # …and the next requests wait it out
    now[0] += 498.0
    assert bucket.take("k") == 0.0


def test_the_limiter_forgets_idle_keys_instead_of_growing() -> None:
    now = [0.0]
    bucket = TokenBucketLimiter(rate_per_minute=60, burst=2, clock=lambda: now[0], max_keys=10)
    for n in range(25):
        bucket.take(f"k{n}")
        now[0] += 0.1
    assert len(bucket._buckets) <= 10


def test_both_limits_must_allow_and_a_refusal_takes_nothing() -> None:
    now = [0.0]
    settings = Settings(
        rate_limit_per_user_per_minute=60, rate_limit_per_ip_per_minute=60, rate_limit_burst=2
    )
    limits = RateLimits.from_settings(settings, clock=lambda: now[0])
    assert limits.take(user_id=1, address="a") == 0.0
    assert limits.take(user_id=2, address="a") == 0.0
    assert limits.take(user_id=3, address="a") > 0  # the address is out of tokens
    assert limits.take(user_id=3, address="b") == 0.0  # user 3 was not charged above
    assert limits.take(user_id=3, address="b") == 0.0
    assert limits.take(user_id=3, address="c") > 0  # now user 3 is out


@pytest.fixture
async def strict_client(engine: Any, tmp_path: Any) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    """An app of its own whose limits are 3 attempts, then one a minute."""
    from api.app import create_app

    settings = Settings(
        data_dir=tmp_path,
        rate_limit_per_user_per_minute=1,
        rate_limit_per_ip_per_minute=1000,
        rate_limit_burst=3,
    )
    strict = create_app(settings, engine=engine, run_sealer=False)
    async with strict.router.lifespan_context(strict):
        transport = httpx.ASGITransport(app=strict, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            yield c, strict


async def test_guessing_serials_is_rate_limited_with_retry_after(
    strict_client: tuple[httpx.AsyncClient, Any], sessionmaker: Any
) -> None:
    client, strict = strict_client
    async with sessionmaker() as session:
        site = await make_site(session, strict)
        await session.commit()
    for _ in range(3):
        response = await client.get(f"/api/v1/cheques/{new_serial()}", headers=site.headers)
        assert_error(response, 404, "cheque_not_found")
    limited = await post_redeem(client, site, new_serial())
    assert_error(limited, 429, "rate_limited")
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert_error(
        await client.get(f"/api/v1/cheques/{new_serial()}", headers=site.headers),
        429,
        "rate_limited",
    )
    # Another mediator is not held back by this one.
    async with sessionmaker() as session:
        colleague = await make_actor(session, strict, OrganisationKind.site, org=site.org)
        await session.commit()
    headers = bearer(strict.state.jwt_secret, colleague.user)
    response = await client.get(f"/api/v1/cheques/{new_serial()}", headers=headers)
    assert_error(response, 404, "cheque_not_found")


# ------------------------------------------------------------------------------- offline


def item(
    code: str, *, at: Any = None, key_: str | None = None, service: str = "naviguer_web"
) -> dict[str, Any]:
    return {
        "code": code,
        "service": service,
        "scanned_at": (at or utcnow()).isoformat(),
        "idempotency_key": key_ or str(uuid.uuid4()),
    }


async def test_an_offline_batch_over_http_reports_each_item_and_replays_on_resend(
    client: httpx.AsyncClient, scene: Scene, site: Actor, session: AsyncSession
) -> None:
    c = scene.cheques
    online_key = key()
    online = await post_redeem(
        client, site, c[5].serial, online_key, service="naviguer_web", demarche_family=None
    )
    assert online.status_code == 201
    t = utcnow() - timedelta(hours=3)
    items = [
        item(c[0].token, at=t),
        item(c[0].serial, at=t + timedelta(minutes=1)),  # scanned twice: conflict
        item(c[1].serial, at=t),
        item(new_serial(), at=t),
        item(c[2].serial, at=utcnow() - timedelta(days=8)),
        # Tried online, then queued offline under the same key: the online answer.
        item(c[5].serial, at=t, key_=online_key["Idempotency-Key"]),
    ]
    response = await client.post(f"{REDEEM}/batch", json={"items": items}, headers=site.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [(r["idempotency_key"], r["status"]) for r in body["results"]] == [
        (i["idempotency_key"], s)
        for i, s in zip(
            items,
            ["accepted", "conflict", "accepted", "refused", "refused", "accepted"],
            strict=True,
        )
    ]
    assert (body["accepted"], body["refused"], body["conflicts"]) == (3, 2, 1)
    results = body["results"]
    assert results[1]["error"]["code"] == "cheque_already_redeemed"
    assert results[1]["error"]["details"]["duplicate_of"] == results[0]["redemption"]["id"]
    assert results[3]["error"]["code"] == "cheque_not_found"
    assert results[4]["error"]["code"] == "invalid_scanned_at"
    assert results[5]["redemption"] == online.json()
    resent = await client.post(f"{REDEEM}/batch", json={"items": items}, headers=site.headers)
    assert resent.json() == body
    count = await session.scalar(
        text("SELECT count(*) FROM redemption WHERE cheque_id = ANY(:ids)"),
        {"ids": [c[0].id, c[1].id, c[5].id]},
    )
    assert count == 3


async def test_a_key_repeated_in_a_batch_for_another_scan_is_refused(
    client: httpx.AsyncClient, scene: Scene, site: Actor, session: AsyncSession
) -> None:
    c = scene.cheques
    same = str(uuid.uuid4())
    items = [
        item(c[0].serial, key_=same),
        item(c[1].serial, key_=same),
        item(c[0].serial, key_=same),
    ]
    body = (
        await client.post(f"{REDEEM}/batch", json={"items": items}, headers=site.headers)
    ).json()
    assert [r["status"] for r in body["results"]] == ["accepted", "refused", "accepted"]
    assert body["results"][1]["error"]["code"] == "idempotency_conflict"
    assert body["results"][2] == body["results"][0]
    assert await cheque_status(session, c[1].id) == "active"


@pytest.mark.parametrize(
    "items",
    [
        [],
        [
            {
                "code": "x",
                "service": "naviguer_web",
                "scanned_at": "2025-01-01T10:00:00",
                "idempotency_key": "k",
            }
        ],  # no time zone
        [
            {
                "code": "x",
                "service": "cuisine",
                "scanned_at": "2025-01-01T10:00:00Z",
                "idempotency_key": "k",
            }
        ],
        [{"code": "x", "service": "naviguer_web", "scanned_at": "2025-01-01T10:00:00Z"}],
        [
            {
                "code": "x",
                "service": "naviguer_web",
                "scanned_at": "2025-01-01T10:00:00Z",
                "idempotency_key": "k",
            }
        ]
        * 501,
    ],
    ids=["empty", "naive", "service", "no-key", "too-many"],
)
async def test_a_malformed_batch_is_refused_whole(
    client: httpx.AsyncClient, site: Actor, items: list[dict[str, Any]]
) -> None:
    response = await client.post(f"{REDEEM}/batch", json={"items": items}, headers=site.headers)
    assert_error(response, 422, "validation_error")


# ------------------------------------------------------------------------------- list, reverse


async def test_a_site_lists_its_own_redemptions_and_the_operator_all(
    client: httpx.AsyncClient, scene: Scene, site: Actor, session: AsyncSession, app: Any
) -> None:
    other = await make_site(session, app)
    operator = await make_actor(session, app, OrganisationKind.operator)
    issuer = await make_actor(session, app, OrganisationKind.issuer)
    await session.commit()
    mine = [(await post_redeem(client, site, c.serial)).json() for c in scene.cheques[:3]]
    theirs = (await post_redeem(client, other, scene.cheques[3].serial)).json()
    listed = await client.get(REDEEM, params={"limit": 2}, headers=site.headers)
    assert listed.status_code == 200, listed.text
    page = listed.json()
    assert [i["id"] for i in page["items"]] == [mine[2]["id"], mine[1]["id"]]
    first = page["items"][0]
    assert first["cheque_serial"] == scene.cheques[2].serial
    assert (first["value_cents"], first["service"], first["demarche_family"]) == (
        1000,
        "realiser_demarche",
        "caf",
    )
    assert first["reversible"] is True
    rest = (
        await client.get(
            REDEEM, params={"limit": 2, "cursor": page["next_cursor"]}, headers=site.headers
        )
    ).json()
    assert [i["id"] for i in rest["items"]] == [mine[0]["id"]]
    assert rest["next_cursor"] is None
    today = utcnow().date().isoformat()
    assert_error(
        await client.get(REDEEM, params={"site_id": other.org.id}, headers=site.headers),
        403,
        "forbidden",
    )
    everyone = (
        await client.get(
            REDEEM, params={"site_id": other.org.id, "from": today}, headers=operator.headers
        )
    ).json()
    assert [i["id"] for i in everyone["items"]] == [theirs["id"]]
    assert_error(await client.get(REDEEM, headers=issuer.headers), 403, "forbidden")
    assert_error(
        await client.get(REDEEM, params={"cursor": "%%%"}, headers=site.headers),
        422,
        "invalid_cursor",
    )


async def test_reversal_over_http_by_the_same_site_only(
    client: httpx.AsyncClient, scene: Scene, site: Actor, session: AsyncSession, app: Any
) -> None:
    done = (await post_redeem(client, site, scene.cheques[0].serial)).json()
    other = await make_site(session, app)
    await session.commit()
    assert_error(
        await client.post(f"{REDEEM}/{done['id']}/reverse", headers=other.headers), 404, "not_found"
    )
    response = await client.post(f"{REDEEM}/{done['id']}/reverse", headers=site.headers)
    assert response.status_code == 200, response.text
    assert response.json()["cheque_serial"] == scene.cheques[0].serial
    assert await cheque_status(session, scene.cheques[0].id) == "active"
    assert_error(
        await client.post(f"{REDEEM}/{done['id']}/reverse", headers=site.headers),
        409,
        "redemption_already_reversed",
    )
    assert_error(
        await client.post(f"{REDEEM}/{2**63}/reverse", headers=site.headers),
        422,
        "validation_error",
    )
    listed = (await client.get(REDEEM, headers=site.headers)).json()["items"]
    assert (listed[0]["reversed_at"] is not None, listed[0]["reversible"]) == (True, False)


async def test_answers_are_stored_per_user_in_the_same_transaction(
    client: httpx.AsyncClient, scene: Scene, site: Actor, session: AsyncSession
) -> None:
    headers = key()
    done = await post_redeem(client, site, scene.cheques[0].serial, headers)
    record = (
        await session.execute(
            select(IdempotencyRecord).where(
                IdempotencyRecord.user_id == site.id,
                IdempotencyRecord.key == headers["Idempotency-Key"],
            )
        )
    ).scalar_one()
    assert (record.status_code, record.response) == (201, done.json())
    redemption = await session.get(Redemption, done.json()["id"])
    assert redemption is not None and redemption.user_id == site.id
