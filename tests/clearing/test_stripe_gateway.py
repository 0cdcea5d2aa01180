"""Collecting financer statements through Stripe, against a real localstripe server."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from clearing.stripe_gateway import (
    InvalidWebhookSignature,
    PaymentProviderError,
    StripeGateway,
    construct_event,
)
from tests.support.localstripe import ReceivedWebhook, WebhookReceiver

API_KEY = "sk_test_passnum"
CAF_IBAN = "FR1420041010050500013M02606"
FAILING_IBAN = "DE62370400440532013001"  # localstripe's SEPA debit that fails after a while


@pytest.fixture
async def gateway(localstripe_url: str) -> AsyncIterator[StripeGateway]:
    gw = StripeGateway(API_KEY, localstripe_url, localstripe=True, max_network_retries=0)
    yield gw
    await gw.aclose()


@pytest.fixture
async def webhook_secret(gateway: StripeGateway, webhook_receiver: WebhookReceiver) -> str:
    secret = f"whsec_{uuid.uuid4().hex}"
    await gateway.configure_webhook(webhook_receiver.url, secret,
                                    webhook_id=f"test-{uuid.uuid4().hex[:8]}",
                                    events=["payment_intent.succeeded",
                                            "payment_intent.payment_failed"])
    return secret


def _about(intent_id: str, event_type: str):  # type: ignore[no-untyped-def]
    def match(hook: ReceivedWebhook) -> bool:
        body = hook.json()
        return body["type"] == event_type and body["data"]["object"]["id"] == intent_id
    return match


async def _stripe_get(base: str, path: str) -> dict:
    """Read an object straight from the server, without the gateway under test."""
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {API_KEY}"}) as http:
        response = await http.get(f"{base}{path}")
    response.raise_for_status()
    return response.json()


async def test_a_financer_gets_a_customer_with_a_default_sepa_debit_payment_method(
        gateway, localstripe_url):
    customer_id, method_id = await gateway.create_customer_with_sepa_mandate(
        name="CAF de l'Aisne", email="compta@caf.example.org", iban=CAF_IBAN)

    customer = await _stripe_get(localstripe_url, f"/v1/customers/{customer_id}")
    method = await _stripe_get(localstripe_url, f"/v1/payment_methods/{method_id}")
    assert customer["name"] == "CAF de l'Aisne"
    assert customer["invoice_settings"]["default_payment_method"] == method_id
    assert method["type"] == "sepa_debit"
    assert method["customer"] == customer_id
    assert method["sepa_debit"]["last4"] == CAF_IBAN[-4:]


async def test_a_statement_is_collected_and_its_success_arrives_as_a_signed_webhook(
        gateway, webhook_receiver, webhook_secret):
    mandate = await gateway.create_customer_with_sepa_mandate(
        name="Département de l'Aisne", email=None, iban=CAF_IBAN)

    intent = await gateway.collect(
        statement_id=345, customer_id=mandate.customer_id,
        payment_method_id=mandate.payment_method_id, amount_cents=123_456,
        description="Pass numérique lot 12 relevé 345", idempotency_key="statement:345")

    assert intent.id.startswith("pi_")
    assert intent.amount_cents == 123_456
    assert intent.statement_id == "345"
    # localstripe answers `succeeded` at once, real Stripe `processing`: both are provisional.
    assert intent.status in {"processing", "succeeded"}

    hook = await webhook_receiver.wait_for_async(_about(intent.id, "payment_intent.succeeded"))
    event = construct_event(hook.body, hook.signature, webhook_secret)
    assert event.type == "payment_intent.succeeded"
    assert event.id.startswith("evt_")
    assert event.object_type == "payment_intent"
    assert event.payment_intent is not None
    assert event.payment_intent.id == intent.id
    assert event.payment_intent.status == "succeeded"
    assert event.payment_intent.statement_id == "345"
    assert event.payment_intent.amount_cents == 123_456
    assert event.data["currency"] == "eur"
    assert event.data["metadata"]["description"] == "Pass numérique lot 12 relevé 345"


async def test_a_failed_sepa_debit_arrives_as_payment_failed_with_its_reason(
        gateway, webhook_receiver, webhook_secret):
    mandate = await gateway.create_customer_with_sepa_mandate(
        name="Commune sans provision", email=None, iban=FAILING_IBAN)

    intent = await gateway.collect(
        statement_id="stmt-9", customer_id=mandate.customer_id,
        payment_method_id=mandate.payment_method_id, amount_cents=1_003,
        description="Pass numérique lot 1 relevé 9", idempotency_key="statement:stmt-9")
    assert intent.status == "processing"

    hook = await webhook_receiver.wait_for_async(
        _about(intent.id, "payment_intent.payment_failed"))
    event = construct_event(hook.body, hook.signature, webhook_secret)
    assert event.payment_intent is not None
    assert event.payment_intent.statement_id == "stmt-9"
    assert event.payment_intent.status == "requires_payment_method"
    assert event.payment_intent.failure_code == "card_declined"
    assert (await gateway.retrieve_payment_intent(intent.id)).status == \
        "requires_payment_method"


async def test_a_webhook_with_a_bad_signature_is_refused(
        gateway, webhook_receiver, webhook_secret):
    mandate = await gateway.create_customer_with_sepa_mandate(
        name="EPCI", email=None, iban=CAF_IBAN)
    intent = await gateway.collect(
        statement_id=7, customer_id=mandate.customer_id,
        payment_method_id=mandate.payment_method_id, amount_cents=500,
        description="relevé 7", idempotency_key="statement:7")
    hook = await webhook_receiver.wait_for_async(_about(intent.id, "payment_intent.succeeded"))
    assert construct_event(hook.body, hook.signature, webhook_secret).type \
        == "payment_intent.succeeded"

    tampered = hook.body.replace(b'"amount": 500', b'"amount": 5000')
    assert tampered != hook.body
    for payload, header, secret in [
        (tampered, hook.signature, webhook_secret),           # body changed after signing
        (hook.body, hook.signature, "whsec_someone_else"),    # another endpoint's secret
        (hook.body, None, webhook_secret),                    # no signature at all
        (hook.body, "t=1,v1=00", webhook_secret),             # made up
    ]:
        with pytest.raises(InvalidWebhookSignature) as caught:
            construct_event(payload, header, secret)
        assert caught.value.code == "invalid_signature"


def _sign(payload: bytes, secret: str, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), b"%d.%s" % (timestamp, payload), hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def test_a_correctly_signed_but_stale_webhook_is_refused():
    payload = json.dumps({"id": "evt_1", "type": "payment_intent.succeeded", "created": 1,
                          "data": {"object": {"object": "payment_intent", "id": "pi_1",
                                              "status": "succeeded", "amount": 100,
                                              "metadata": {"statement_id": "1"}}}}).encode()
    now = int(time.time())
    assert construct_event(payload, _sign(payload, "whsec_x", now), "whsec_x").payment_intent \
        .statement_id == "1"
    with pytest.raises(InvalidWebhookSignature):
        construct_event(payload, _sign(payload, "whsec_x", now - 3600), "whsec_x")


def test_a_signed_payload_that_is_not_an_event_is_refused():
    payload = b'{"hello": "world"}'
    with pytest.raises(InvalidWebhookSignature) as caught:
        construct_event(payload, _sign(payload, "whsec_x", int(time.time())), "whsec_x")
    assert caught.value.code == "invalid_payload"


async def test_collecting_from_an_unknown_customer_is_a_provider_error(gateway):
    with pytest.raises(PaymentProviderError) as caught:
        await gateway.collect(statement_id=1, customer_id="cus_doesnotexist",
                              payment_method_id="pm_doesnotexist", amount_cents=100,
                              description="x", idempotency_key="statement:1")
    assert caught.value.code == "payment_provider_error"
    assert caught.value.details["http_status"] == 404


async def test_without_the_localstripe_dialect_the_current_api_parameters_are_sent(
        gateway, localstripe_url):
    # Real Stripe is out of reach; localstripe's refusal of the parameters it does not know
    # shows what a gateway in production mode sends.
    mandate = await gateway.create_customer_with_sepa_mandate(
        name="Région", email=None, iban=CAF_IBAN)
    production = StripeGateway(API_KEY, localstripe_url, max_network_retries=0)
    try:
        with pytest.raises(PaymentProviderError) as caught:
            await production.collect(
                statement_id=3, customer_id=mandate.customer_id,
                payment_method_id=mandate.payment_method_id, amount_cents=100,
                description="relevé 3", idempotency_key="statement:3")
        with pytest.raises(ValueError):
            await production.configure_webhook("http://127.0.0.1:1/", "whsec_x")
    finally:
        await production.aclose()
    message = caught.value.details["stripe_message"]
    assert "allowed_payment_method_types" in message
    assert "description" in message
