"""Paying statements: financers collected by Stripe PaymentIntents (against localstripe, with
its signed webhooks delivered to the real application served by uvicorn), bank transfers
recorded by the operator, SEPA credit transfer files for the sites.

The Stripe tests commit their data (the server answers on its own connections) and use their
own cutoffs; the others run in the test's rolled-back transaction.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import xmlschema
from sqlalchemy import text

from clearing import payments
from clearing.batches import close_batch
from clearing.errors import PaymentAlreadyRecorded, TransferAmountMismatch
from clearing.sepa import NAMESPACE, SCHEMA_PATH, Party, validate_pain001
from clearing.statements import batch_detail, get_statement
from clearing.stripe_gateway import PaymentIntent, StripeGateway, WebhookEvent
from kit.clock import utcnow
from kit.settings import Settings
from ledger import service as ledger
from pass_ import accounts
from pass_.enums import OrganisationKind, Role
from pass_.schemas import UserCreate
from pass_.tokens import Keyring
from tests.clearing.factories import (
    issue_cheques,
    make_scheme,
    make_site,
    paris,
    redeem,
    unique_cutoff,
)
from tests.factories import bearer, make_org
from tests.support.localstripe import ReceivedWebhook, WebhookReceiver

API_KEY = "sk_test_passnum"
GOOD_IBAN = "FR1420041010050500013M02606"
FAILING_IBAN = "DE62370400440532013001"  # localstripe's SEPA debit that fails after a while
OPERATOR = Party("Opérateur du Pass numérique", "FR7630006000011234567890189", "AGRIFRPP")
WEBHOOK_EVENTS = ["payment_intent.succeeded", "payment_intent.payment_failed"]


@pytest.fixture(scope="module")
def keyring(tmp_path_factory: pytest.TempPathFactory) -> Keyring:
    return Keyring.load_or_create(tmp_path_factory.mktemp("clearing-payments") / "keys")


# ------------------------------------------------------------------ the application, served


@dataclass
class LiveApp:
    """The real application behind uvicorn on a loopback port, configured for localstripe."""

    url: str
    settings: Settings
    jwt_secret: str

    @property
    def webhook_url(self) -> str:
        return f"{self.url}/api/v1/webhooks/stripe"


@pytest.fixture(scope="module")
def live_app(database_url: str, localstripe_url: str,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    from api.app import create_app

    settings = Settings(
        data_dir=tmp_path_factory.mktemp("live-app"), database_url=None, log_json=True,
        stripe_api_key=API_KEY, stripe_api_base=localstripe_url,
        stripe_webhook_secret=f"whsec_{uuid.uuid4().hex}",
        rate_limit_per_user_per_minute=100_000, rate_limit_per_ip_per_minute=100_000,
        rate_limit_burst=100_000)
    app = create_app(settings, database_url=database_url, run_sealer=False)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                           access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the application did not start")
        time.sleep(0.01)  # a poll interval while uvicorn binds, not a wait for an outcome
    port = server.servers[0].sockets[0].getsockname()[1]
    yield LiveApp(f"http://127.0.0.1:{port}", settings, settings.secret("jwt_secret"))
    server.should_exit = True
    thread.join(timeout=30)


@pytest.fixture
async def gateway(localstripe_url: str) -> AsyncIterator[StripeGateway]:
    gw = StripeGateway(API_KEY, localstripe_url, localstripe=True, max_network_retries=0)
    yield gw
    await gw.aclose()


@pytest.fixture
async def hooks(gateway: StripeGateway, live_app: LiveApp,
                webhook_receiver: WebhookReceiver) -> WebhookReceiver:
    """localstripe sends the payment events to the application and to a recorder."""
    secret = live_app.settings.stripe_webhook_secret
    assert secret
    await gateway.configure_webhook(live_app.webhook_url, secret, webhook_id="passnum-app",
                                    events=WEBHOOK_EVENTS)
    await gateway.configure_webhook(webhook_receiver.url, secret,
                                    webhook_id=f"recorder-{uuid.uuid4().hex[:8]}",
                                    events=WEBHOOK_EVENTS)
    return webhook_receiver


@dataclass
class Collectable:
    batch_id: int
    statements: dict[int, int]  # financer id → statement id
    operator_headers: dict[str, str]


async def _collectable(sessionmaker, keyring, gateway, live_app, *, ibans: list[str],  # type: ignore[no-untyped-def]
                       cheques: int = 3) -> Collectable:
    """A committed batch whose financers (State, local) have SEPA mandates with `ibans`."""
    async with sessionmaker() as session:
        scheme = await make_scheme(session, keyring)
        for financer, iban in zip(scheme.financers, ibans, strict=True):
            mandate = await gateway.create_customer_with_sepa_mandate(
                name=financer.name, email=None, iban=iban)
            await payments.attach_mandate(session, financer_id=financer.id,
                                          customer_id=mandate.customer_id,
                                          payment_method_id=mandate.payment_method_id)
        site = await make_site(session)
        for i, cheque in enumerate(await issue_cheques(session, scheme, cheques)):
            await redeem(session, scheme, site, cheque, at=paris(2024, 1, 8, 10, i))
        batch, _ = await close_batch(session, cutoff=unique_cutoff(), now=utcnow())
        statements = dict((await session.execute(text(
            "SELECT organisation_id, id FROM statement WHERE batch_id = :b AND kind = 'financer'"
            " AND organisation_id = ANY(:orgs)"),
            {"b": batch.id, "orgs": [f.id for f in scheme.financers]})).all())
        operator = await make_org(session, OrganisationKind.operator)
        user = await accounts.create_user(session, UserCreate(
            email=f"operateur-{uuid.uuid4().hex[:8]}@exemple.fr",
            password="motdepasse-solide-42", organisation_id=operator.id,  # type: ignore[arg-type]
            role=Role.operator_admin))
        await session.commit()
    return Collectable(batch.id, statements,  # type: ignore[arg-type]
                       bearer(live_app.jwt_secret, user))


async def _until(sessionmaker, sql: str, params: dict, expected: object,  # type: ignore[no-untyped-def]
                 timeout_s: float = 20.0) -> None:
    """Wait, up to a deadline, until `sql` returns `expected` (webhooks arrive ~1 s later)."""
    deadline = time.monotonic() + timeout_s
    while True:
        async with sessionmaker() as session:
            value = (await session.execute(text(sql), params)).scalar()
        if value == expected:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{sql!r} gave {value!r}, still not {expected!r}")
        await asyncio.sleep(0.05)  # a poll interval under a deadline


async def _intents_for(localstripe_url: str, statement_id: int) -> list[dict]:
    """Every PaymentIntent localstripe holds for a statement (read past the gateway)."""
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {API_KEY}"}) as http:
        found, after = [], None
        while True:
            params = {"limit": 100, **({"starting_after": after} if after else {})}
            page = (await http.get(f"{localstripe_url}/v1/payment_intents",
                                   params=params)).json()
            found += [pi for pi in page["data"]
                      if pi.get("metadata", {}).get("statement_id") == str(statement_id)]
            if not page.get("has_more"):
                return found
            after = page["data"][-1]["id"]


def _signed(live_app: LiveApp, event: dict) -> tuple[bytes, str]:
    """An event signed like Stripe signs it, with the application's webhook secret."""
    payload = json.dumps(event).encode()
    timestamp = int(time.time())
    secret = live_app.settings.stripe_webhook_secret or ""
    mac = hmac.new(secret.encode(), b"%d.%s" % (timestamp, payload), hashlib.sha256)
    return payload, f"t={timestamp},v1={mac.hexdigest()}"


async def _post_webhook(live_app: LiveApp, payload: bytes, signature: str | None) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if signature:
        headers["Stripe-Signature"] = signature
    async with httpx.AsyncClient() as http:
        return await http.post(live_app.webhook_url, content=payload, headers=headers)


def _about(intent_id: str, event_type: str):  # type: ignore[no-untyped-def]
    def match(hook: ReceivedWebhook) -> bool:
        body = hook.json()
        return body["type"] == event_type and body["data"]["object"]["id"] == intent_id
    return match


# ------------------------------------------------------------------------------- Stripe


async def test_each_financer_statement_gets_one_payment_intent_and_its_webhook_marks_it_paid(
        sessionmaker, keyring, gateway, live_app, hooks, localstripe_url):
    batch = await _collectable(sessionmaker, keyring, gateway, live_app,
                               ibans=[GOOD_IBAN, GOOD_IBAN])

    async with httpx.AsyncClient(base_url=live_app.url, headers=batch.operator_headers) as api:
        first = await api.post(f"/api/v1/clearing/batches/{batch.batch_id}/collect")
        second = await api.post(f"/api/v1/clearing/batches/{batch.batch_id}/collect")

    assert first.status_code == 200, first.text
    created = {p["statement_id"]: p["payment_intent_id"]
               for p in first.json()["payment_intents"]}
    assert set(batch.statements.values()) <= set(created)
    assert second.json()["payment_intents"] == []  # nothing new the second time
    for statement_id in batch.statements.values():
        intents = await _intents_for(localstripe_url, statement_id)
        assert [pi["id"] for pi in intents] == [created[statement_id]]
        await _until(sessionmaker, "SELECT status FROM statement WHERE id = :id",
                     {"id": statement_id}, "paid")
    async with sessionmaker() as session:
        for financer, statement_id in batch.statements.items():
            read = await get_statement(session, statement_id, organisation_id=financer)
            assert read.paid_cents == read.net_cents == 1500
            assert read.payment_reference == created[statement_id]
            assert read.payment and read.payment.status == "succeeded"
            entry = await ledger.get_entry(session, f"paid:{statement_id}")
            assert entry is not None and sorted(entry.postings) == sorted(
                [(f"financer:{financer}:receivable", 1500), ("bank", -1500)])
            assert await ledger.balance(session, f"financer:{financer}:receivable") == 0


async def test_a_replayed_or_late_event_changes_nothing(
        sessionmaker, keyring, gateway, live_app, hooks):
    batch = await _collectable(sessionmaker, keyring, gateway, live_app,
                               ibans=[GOOD_IBAN, GOOD_IBAN], cheques=1)
    [(statement_id, intent_id), *_] = await payments.collect(
        sessionmaker, gateway, statement_ids=[next(iter(batch.statements.values()))])
    delivered = await hooks.wait_for_async(_about(intent_id, "payment_intent.succeeded"))
    await _until(sessionmaker, "SELECT status FROM statement WHERE id = :id",
                 {"id": statement_id}, "paid")

    replay = await _post_webhook(live_app, delivered.body, delivered.signature)
    late_failure = dict(delivered.json(), id=f"evt_late_{uuid.uuid4().hex[:12]}",
                        type="payment_intent.payment_failed")
    late = await _post_webhook(live_app, *_signed(live_app, late_failure))

    assert (replay.status_code, replay.json()["outcome"]) == (200, "duplicate")
    assert (late.status_code, late.json()["outcome"]) == (200, "already_paid")
    async with sessionmaker() as session:
        status, paid = (await session.execute(text(
            "SELECT status, paid_cents FROM statement WHERE id = :id"),
            {"id": statement_id})).one()
        assert (status, paid) == ("paid", 500)
        assert await session.scalar(text(
            "SELECT count(*) FROM ledger_entry WHERE idempotency_key = :k"),
            {"k": f"paid:{statement_id}"}) == 1
        assert await session.scalar(text(
            "SELECT count(*) FROM stripe_event WHERE event_id = :e"),
            {"e": delivered.json()["id"]}) == 1


async def test_a_success_arriving_after_a_failure_wins(
        sessionmaker, keyring, gateway, live_app, hooks):
    batch = await _collectable(sessionmaker, keyring, gateway, live_app,
                               ibans=[FAILING_IBAN, FAILING_IBAN], cheques=1)
    statement_id = next(iter(batch.statements.values()))
    [(_, intent_id)] = await payments.collect(sessionmaker, gateway,
                                              statement_ids=[statement_id])
    failure = await hooks.wait_for_async(_about(intent_id, "payment_intent.payment_failed"))
    await _until(sessionmaker, "SELECT status FROM statement WHERE id = :id",
                 {"id": statement_id}, "failed")

    # The same intent's success, delivered after its failure (Stripe may send them late).
    body = failure.json()
    success = dict(body, id=f"evt_ok_{uuid.uuid4().hex[:12]}", type="payment_intent.succeeded",
                   data={"object": dict(body["data"]["object"], status="succeeded",
                                        last_payment_error=None)})
    answer = await _post_webhook(live_app, *_signed(live_app, success))

    assert answer.json()["outcome"] == "paid"
    async with sessionmaker() as session:
        read = await get_statement(session, statement_id, organisation_id=None)
        assert (read.status, read.paid_cents, read.failure_message) == ("paid", 500, None)
        assert read.payment and read.payment.status == "succeeded"
        assert await ledger.get_entry(session, f"paid:{statement_id}") is not None


async def test_a_webhook_with_a_bad_signature_is_refused(live_app, sessionmaker):
    event = {"id": f"evt_forged_{uuid.uuid4().hex[:8]}", "type": "payment_intent.succeeded",
             "created": int(time.time()),
             "data": {"object": {"object": "payment_intent", "id": "pi_forged",
                                 "status": "succeeded", "amount": 100,
                                 "metadata": {"statement_id": "1"}}}}
    payload, signature = _signed(live_app, event)
    forged = signature.replace("v1=", "v1=0")

    for header in (forged, None, "t=1,v1=abc"):
        answer = await _post_webhook(live_app, payload, header)
        assert answer.status_code == 400
        assert answer.json()["error"]["code"] == "invalid_signature"
    async with sessionmaker() as session:
        assert await session.scalar(text(
            "SELECT count(*) FROM stripe_event WHERE event_id = :e"), {"e": event["id"]}) == 0


async def test_a_crash_between_reserving_and_recording_still_makes_one_intent(
        sessionmaker, keyring, gateway, live_app, localstripe_url):
    batch = await _collectable(sessionmaker, keyring, gateway, live_app,
                               ibans=[GOOD_IBAN, GOOD_IBAN], cheques=1)
    statement_id = next(iter(batch.statements.values()))
    # The payment row is committed, then the process dies before calling Stripe.
    async with sessionmaker() as session:
        [reserved] = await payments.reserve_collections(session, statement_ids=[statement_id])
        await session.commit()
    assert reserved.payment_intent_id is None

    done = await payments.collect(sessionmaker, gateway, statement_ids=[statement_id])
    again = await payments.collect(sessionmaker, gateway, statement_ids=[statement_id])

    assert [s for s, _ in done] == [statement_id] and again == []
    assert [pi["id"] for pi in await _intents_for(localstripe_url, statement_id)] == \
        [done[0][1]]
    async with sessionmaker() as session:
        assert await session.scalar(text(
            "SELECT payment_intent_id FROM payment WHERE statement_id = :s"),
            {"s": statement_id}) == done[0][1]


class _Crash(Exception):
    """The process dying between Stripe's answer and the commit of the intent's id."""


class _DiesAfterStripe:
    """The real localstripe gateway, whose caller dies as soon as Stripe has answered."""

    def __init__(self, gateway: StripeGateway) -> None:
        self.gateway = gateway

    async def collect(self, **kwargs: Any) -> PaymentIntent:
        await self.gateway.collect(**kwargs)
        raise _Crash()

    async def find_intent(self, **kwargs: Any) -> PaymentIntent | None:
        return await self.gateway.find_intent(**kwargs)


async def test_a_crash_after_stripe_answered_is_recovered_by_the_intents_metadata(
        sessionmaker, keyring, gateway, live_app, localstripe_url):
    # localstripe ignores idempotency keys: without the recovery, the next collect would make
    # a second PaymentIntent — a second debit of the financer (issue 17, item 5).
    batch = await _collectable(sessionmaker, keyring, gateway, live_app,
                               ibans=[GOOD_IBAN, GOOD_IBAN], cheques=1)
    statement_id = next(iter(batch.statements.values()))
    with pytest.raises(_Crash):
        await payments.collect(sessionmaker, _DiesAfterStripe(gateway),
                               statement_ids=[statement_id])
    [created] = await _intents_for(localstripe_url, statement_id)
    async with sessionmaker() as session:
        assert await session.scalar(text(
            "SELECT payment_intent_id FROM payment WHERE statement_id = :s"),
            {"s": statement_id}) is None

    done = await payments.collect(sessionmaker, gateway, statement_ids=[statement_id])

    assert done == [(statement_id, created["id"])]
    assert [pi["id"] for pi in await _intents_for(localstripe_url, statement_id)] == \
        [created["id"]]
    async with sessionmaker() as session:
        assert (await session.execute(text(
            "SELECT p.payment_intent_id, s.status FROM payment p "
            "JOIN statement s ON s.id = p.statement_id WHERE s.id = :s"),
            {"s": statement_id})).one() == (created["id"], "processing")
    assert await payments.collect(sessionmaker, gateway, statement_ids=[statement_id]) == []


# ------------------------------------------------------------------------------ transfers


@pytest.fixture
async def cleared(session, keyring):  # type: ignore[no-untyped-def]
    """A batch of 4 cheques at 3 sites: a good IBAN, an invalid one, none; no mandates."""
    scheme = await make_scheme(session, keyring, site_commission_bp=100)
    good = await make_site(session, name="Médiathèque de Rennes")
    invalid = await make_site(session, name="Association Clic")
    missing = await make_site(session, name="Bus numérique")
    await session.execute(text("UPDATE organisation SET iban = 'FR7630006000011234567890188' "
                               "WHERE id = :id"), {"id": invalid.id})
    await session.execute(text("UPDATE organisation SET iban = NULL WHERE id = :id"),
                          {"id": missing.id})
    cheques = await issue_cheques(session, scheme, 4)
    for site, cheque in zip([good, good, invalid, missing], cheques, strict=True):
        await redeem(session, scheme, site, cheque, at=paris(2024, 1, 15))
    batch, _ = await close_batch(session, cutoff=unique_cutoff(), now=utcnow())
    ids = dict((await session.execute(text(
        "SELECT organisation_id, id FROM statement WHERE batch_id = :b"),
        {"b": batch.id})).all())
    return scheme, (good, invalid, missing), batch, ids


async def test_a_financer_without_a_mandate_pays_by_a_transfer_the_operator_records(
        session, cleared):
    scheme, _sites, _batch, ids = cleared
    local = scheme.financer_id(1)
    statement_id = ids[local]
    read = await get_statement(session, statement_id, organisation_id=local)
    assert (read.payment_method, read.status, read.net_cents) == ("transfer", "open", 2000)
    assert await payments.reserve_collections(session, statement_ids=[statement_id]) == []

    with pytest.raises(TransferAmountMismatch):
        await payments.record_transfer(session, statement_id=statement_id, reference="VIR-1",
                                       amount_cents=1999, received_on=date(2024, 2, 10),
                                       now=utcnow())
    await payments.record_transfer(session, statement_id=statement_id, reference="VIR-1",
                                   amount_cents=2000, received_on=date(2024, 2, 10),
                                   now=utcnow())
    await payments.record_transfer(session, statement_id=statement_id, reference="VIR-1",
                                   amount_cents=2000, received_on=date(2024, 2, 10),
                                   now=utcnow())  # the same transfer again: nothing new
    with pytest.raises(PaymentAlreadyRecorded):
        await payments.record_transfer(session, statement_id=statement_id, reference="VIR-2",
                                       amount_cents=2000, received_on=date(2024, 2, 11),
                                       now=utcnow())

    read = await get_statement(session, statement_id, organisation_id=local)
    assert (read.status, read.paid_cents, read.paid_on, read.payment_reference) == \
        ("paid", 2000, date(2024, 2, 10), "VIR-1")
    assert await ledger.balance(session, f"financer:{local}:receivable") == 0
    assert await session.scalar(text(
        "SELECT count(*) FROM ledger_entry WHERE idempotency_key = :k"),
        {"k": f"paid:{statement_id}"}) == 1


async def test_the_sepa_file_validates_and_pays_the_sites_net_minus_the_held_ones(
        session, cleared):
    _scheme, (good, invalid, missing), batch, ids = cleared

    built = await payments.sepa_file(session, batch.id, debtor=OPERATOR,
                                     created_at=datetime(2024, 2, 2, 9, tzinfo=UTC),
                                     execution_date=date(2024, 2, 5))

    assert built.xml is not None
    xmlschema.XMLSchema(str(Path(SCHEMA_PATH))).validate(built.xml)
    validate_pain001(built.xml)
    root = ET.fromstring(built.xml)
    ns = {"p": NAMESPACE}
    amounts = [Decimal(a.text or "") for a in root.iterfind(".//p:InstdAmt", ns)]
    control = Decimal(root.findtext(".//p:GrpHdr/p:CtrlSum", namespaces=ns) or "")
    # Good site: 2 × 1000 − 1 % = 1980 cents; the two others are held.
    assert amounts == [Decimal("19.80")] and control == Decimal("19.80")
    assert built.total_cents == 1980
    assert [e.text for e in root.iterfind(".//p:EndToEndId", ns)] == [str(ids[good.id])]
    statuses = dict((await session.execute(text(
        "SELECT organisation_id, hold_code FROM statement WHERE id = ANY(:ids)"),
        {"ids": [ids[s.id] for s in (good, invalid, missing)]})).all())
    assert statuses == {good.id: None, invalid.id: "iban_invalid", missing.id: "iban_missing"}
    detail = await batch_detail(session, batch.id)
    held = {h.organisation_id: h.reason for h in detail.held}
    assert set(held) == {invalid.id, missing.id}
    assert "IBAN manquant" in held[missing.id] and "IBAN invalide" in held[invalid.id]
    sites_net = sum(s.net_cents for s in detail.statements
                    if s.kind == "site" and s.organisation_id in {good.id, invalid.id,
                                                                   missing.id})
    held_net = sum(h.net_cents for h in detail.held)
    assert built.total_cents == sites_net - held_net


async def test_a_debit_succeeding_after_a_transfer_was_recorded_is_reported_as_paid_twice(
        session, cleared):
    scheme, _sites, _batch, ids = cleared
    state = scheme.financer_id(0)
    statement_id = ids[state]
    await payments.attach_mandate(session, financer_id=state, customer_id="cus_essai",
                                  payment_method_id="pm_essai")
    [collection] = await payments.reserve_collections(session, statement_ids=[statement_id])
    intent = PaymentIntent(id=f"pi_{uuid.uuid4().hex[:10]}", status="processing",
                           amount_cents=collection.amount_cents,
                           statement_id=str(statement_id))
    await payments.record_intent(session, collection, intent)

    def event(kind: str, status: str) -> WebhookEvent:
        return WebhookEvent(id=f"evt_{uuid.uuid4().hex[:12]}", type=kind, created_at=utcnow(),
                            object_type="payment_intent", object_id=intent.id,
                            payment_intent=replace(intent, status=status,
                                                   failure_code="insufficient_funds"
                                                   if status != "succeeded" else None))

    failed = await payments.handle_webhook(
        session, event("payment_intent.payment_failed", "requires_payment_method"),
        now=utcnow())
    await payments.record_transfer(session, statement_id=statement_id, reference="VIR-RATTRAP",
                                   amount_cents=collection.amount_cents,
                                   received_on=date(2024, 2, 20), now=utcnow())
    late = await payments.handle_webhook(session, event("payment_intent.succeeded", "succeeded"),
                                         now=utcnow())

    assert (failed.outcome, late.outcome) == ("failed", "paid_twice")
    read = await get_statement(session, statement_id, organisation_id=None)
    assert (read.status, read.payment_reference) == ("paid", "VIR-RATTRAP")
    assert await session.scalar(text(
        "SELECT count(*) FROM ledger_entry WHERE idempotency_key = :k"),
        {"k": f"paid:{statement_id}"}) == 1


def test_a_sepa_file_asks_for_execution_the_next_day_even_across_a_year_end():
    assert payments.sepa_execution_date(date(2024, 2, 2)) == date(2024, 2, 3)
    assert payments.sepa_execution_date(date(2024, 2, 29)) == date(2024, 3, 1)
    assert payments.sepa_execution_date(date(2024, 12, 31)) == date(2025, 1, 1)


async def test_the_batch_sepa_file_made_today_is_to_be_executed_tomorrow(session, cleared):
    _scheme, _sites, batch, _ids = cleared

    built = await payments.batch_sepa_file(session, batch_id=batch.id, debtor=OPERATOR,
                                           today=date(2024, 2, 2),
                                           now=datetime(2024, 2, 2, 9, tzinfo=UTC))

    assert built.xml is not None
    root = ET.fromstring(built.xml)
    ns = {"p": NAMESPACE}
    assert [e.text for e in root.iterfind(".//p:ReqdExctnDt", ns)] == ["2024-02-03"]
    assert root.findtext(".//p:GrpHdr/p:CreDtTm", namespaces=ns).startswith("2024-02-02")
