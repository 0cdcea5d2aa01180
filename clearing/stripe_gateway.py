"""The one door to Stripe: SEPA Direct Debit collection from financers and signed webhooks.

No other module imports `stripe`; callers get plain dataclasses and DomainErrors back. The calls
use the SDK's native async client (httpx), so a gateway belongs to one event loop: create it
in the loop that uses it and `await gateway.aclose()` at the end.

Tests and development run against localstripe (1.15), a stateful fake of Stripe's API. What
it does, read from its source, and how this module copes:

- Customers, `sepa_debit` and card PaymentMethods, attach, `invoice_settings.
  default_payment_method`: supported. Mandates are not modelled: a `sepa_debit` PaymentMethod
  carries a fixed fake `mandate_reference`, and SetupIntent confirmation accepts no
  `mandate_data`. `create_customer_with_sepa_mandate` therefore creates and attaches the
  PaymentMethod directly; that path is for the demo and tests only — real Stripe requires the
  financer's mandate acceptance (a SetupIntent with `mandate_data`, or Checkout in setup mode).
- PaymentIntents with `confirm=true` and `off_session=true` (the latter only with confirm):
  supported. It knows the old `payment_method_types` parameter, which the API version this
  SDK pins (2026-10-28.endive) refuses (`payment_method_types_no_longer_supported`, removed
  in 2026-09-30.endive for `allowed_payment_method_types`), and it refuses `description`
  ("Unexpected description"). Hence `StripeGateway(..., localstripe=True)` speaks its
  dialect: `payment_method_types`, no `description`. With real Stripe we send
  `allowed_payment_method_types=["sepa_debit"]` and `description`. Both carry the
  description in `metadata["description"]` too, and the statement id in
  `metadata["statement_id"]`.
- SEPA debits: the PaymentIntent comes back `succeeded` at once (real Stripe says
  `processing` for days); the charge settles 0.5 s later and `payment_intent.succeeded` is
  sent about 1 s after that. The IBAN DE62370400440532013001 fails the same way, later:
  the intent answers `processing`, then `requires_payment_method` with
  `payment_intent.payment_failed`. Callers must treat the webhook, not the answer to
  `collect`, as the outcome — which is right for real Stripe too.
- Idempotency keys: the header is sent and ignored by localstripe (a retry creates a second
  PaymentIntent there). Our own table guarantees one PaymentIntent per statement.
- Webhooks: registered with `POST /_config/webhooks/{id}` (`url`, `secret`, optional
  `events`), no auth, kept in memory only (lost on restart). Each event is sent once, about
  1 s after it happens, to every registered URL, unretried, signed like Stripe
  (`Stripe-Signature: t=<created>,v1=<HMAC-SHA256(secret, "<t>.<payload>")>`). Every event
  type is sent (customer.created, …) unless `events` filters them. Events carry the
  `api_version` 2017-08-15, so they are read here as plain JSON, not through SDK objects.
- Not supported there: invoices outside subscriptions, refunds of SEPA debits' disputes,
  payouts to sites (sites are paid by SEPA credit transfer files, see clearing/sepa.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

import httpx
import stripe

from kit.errors import DomainError

if TYPE_CHECKING:
    from stripe.params import (
        CustomerCreateParams,
        PaymentIntentCreateParams,
        PaymentMethodCreateParamsBillingDetails,
    )

WEBHOOK_TOLERANCE_S = 300  # Stripe's default: a signed event older than 5 minutes is refused


class InvalidWebhookSignature(DomainError):
    code = "invalid_signature"
    message = "La signature du webhook Stripe est invalide."


class PaymentRefused(DomainError):
    code = "payment_refused"
    message = "Le prélèvement a été refusé par le prestataire de paiement."


class PaymentProviderError(DomainError):
    code = "payment_provider_error"
    message = "Le prestataire de paiement n'a pas pu traiter la demande."


class SepaMandate(NamedTuple):
    customer_id: str
    payment_method_id: str


@dataclass(frozen=True, slots=True)
class PaymentIntent:
    """What we keep of a Stripe PaymentIntent."""

    id: str
    status: str  # requires_payment_method | processing | succeeded | canceled | …
    amount_cents: int
    statement_id: str | None
    failure_code: str | None = None
    failure_message: str | None = None


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """A verified webhook event, as plain values."""

    id: str
    type: str
    created_at: datetime
    object_type: str | None
    object_id: str | None
    payment_intent: PaymentIntent | None  # set when the event is about a PaymentIntent
    data: Mapping[str, Any] = field(default_factory=dict)  # the event's object, as sent


def construct_event(payload: bytes, sig_header: str | None, secret: str, *,
                    tolerance_s: int = WEBHOOK_TOLERANCE_S) -> WebhookEvent:
    """Verify a webhook's `Stripe-Signature` against `secret` and read the event.

    Raises InvalidWebhookSignature (code `invalid_signature`) when the signature is missing,
    wrong or older than `tolerance_s`, and when a signed payload is not a Stripe event.
    """
    try:
        stripe.WebhookSignature.verify_header(payload, sig_header, secret, tolerance_s)
    except stripe.SignatureVerificationError as exc:
        raise InvalidWebhookSignature(reason=str(exc)) from exc
    try:
        body = json.loads(payload)
        obj = body["data"]["object"]
        event_id, event_type, created = body["id"], body["type"], int(body["created"])
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidWebhookSignature("Le webhook Stripe signé n'est pas un événement lisible.",
                                      code="invalid_payload") from exc
    is_intent = isinstance(obj, dict) and obj.get("object") == "payment_intent"
    return WebhookEvent(
        id=event_id,
        type=event_type,
        created_at=datetime.fromtimestamp(created, UTC),
        object_type=obj.get("object") if isinstance(obj, dict) else None,
        object_id=obj.get("id") if isinstance(obj, dict) else None,
        payment_intent=_intent(obj) if is_intent else None,
        data=obj if isinstance(obj, dict) else {},
    )


class StripeGateway:
    """Stripe (or localstripe at `api_base`) for collecting financer statements."""

    construct_event = staticmethod(construct_event)

    def __init__(self, api_key: str, api_base: str | None = None, *, localstripe: bool = False,
                 timeout_s: float = 30.0, max_network_retries: int = 2) -> None:
        self._api_base = api_base.rstrip("/") if api_base else None
        self._localstripe = localstripe
        self._http = stripe.HTTPXClient(timeout=timeout_s)
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": self._api_base} if self._api_base else None,
            http_client=self._http,
            # Safe: Stripe replays a request carrying the same idempotency key.
            max_network_retries=max_network_retries,
        )

    async def aclose(self) -> None:
        await self._http.close_async()

    async def create_customer_with_sepa_mandate(self, *, name: str, email: str | None,
                                                iban: str) -> SepaMandate:
        """A customer with a `sepa_debit` PaymentMethod attached and set as default.

        For the demo and tests (see the module docstring): it skips the mandate acceptance
        real Stripe requires.
        """
        v1 = self._client.v1
        customer_params: CustomerCreateParams = {"name": name}
        billing: PaymentMethodCreateParamsBillingDetails = {"name": name}
        if email:
            customer_params["email"] = billing["email"] = email
        try:
            customer = await v1.customers.create_async(params=customer_params)
            method = await v1.payment_methods.create_async(params={
                "type": "sepa_debit", "sepa_debit": {"iban": iban},
                "billing_details": billing})
            await v1.payment_methods.attach_async(method.id, params={"customer": customer.id})
            await v1.customers.update_async(customer.id, params={
                "invoice_settings": {"default_payment_method": method.id}})
        except stripe.StripeError as exc:
            raise _domain_error(exc) from exc
        return SepaMandate(customer.id, method.id)

    async def collect(self, *, statement_id: str | int, customer_id: str,
                      payment_method_id: str, amount_cents: int, description: str,
                      idempotency_key: str) -> PaymentIntent:
        """Debit a financer's statement: a confirmed, off-session SEPA PaymentIntent in EUR.

        The answer is provisional (SEPA settles later): the outcome arrives by webhook.
        A refusal Stripe reports with the intent attached comes back as that intent
        (status `requires_payment_method`, failure fields set); one without it raises
        PaymentRefused; other provider errors raise PaymentProviderError.
        """
        if not isinstance(amount_cents, int) or amount_cents <= 0:
            raise ValueError("a collection is a positive amount of cents")
        params: PaymentIntentCreateParams = {
            "amount": amount_cents,
            "currency": "eur",
            "customer": customer_id,
            "payment_method": payment_method_id,
            "allowed_payment_method_types": ["sepa_debit"],
            "confirm": True,
            "off_session": True,
            "description": description[:1000],
            "metadata": {"statement_id": str(statement_id), "description": description[:500]},
        }
        if self._localstripe:
            params = _localstripe_dialect(params)
        try:
            intent = await self._client.v1.payment_intents.create_async(
                params=params, options={"idempotency_key": idempotency_key})
        except stripe.CardError as exc:
            attached = getattr(exc.error, "payment_intent", None) if exc.error else None
            if attached:
                return _intent(_as_dict(attached), failure=(exc.code, exc.user_message))
            raise PaymentRefused(stripe_code=exc.code, reason=exc.user_message) from exc
        except stripe.StripeError as exc:
            raise _domain_error(exc) from exc
        return _intent(_as_dict(intent))

    async def find_intent(self, *, statement_id: str | int,
                          customer_id: str) -> PaymentIntent | None:
        """The PaymentIntent made for `statement_id` (its `metadata["statement_id"]`), if any:
        how `payments.collect` recovers an intent whose id a crash kept it from recording.

        Listed by customer rather than through Stripe's search API: search is eventually
        consistent (an intent created a moment ago may be missing), a list is not.
        localstripe has neither search nor list filters (any filter answers 400): it lists
        everything and the customer is checked here. The oldest match wins (there is one:
        the statement's idempotency key)."""
        wanted = str(statement_id)
        params: dict[str, Any] = {"limit": 100}
        if not self._localstripe:
            params["customer"] = customer_id
        found: list[dict[str, Any]] = []
        try:
            while True:
                page = await self._client.v1.payment_intents.list_async(
                    params=params)  # type: ignore[arg-type]
                items = [_as_dict(i) for i in page.data]
                found += [i for i in items
                          if (i.get("metadata") or {}).get("statement_id") == wanted
                          and i.get("customer") == customer_id
                          and i.get("status") != "canceled"]
                if not page.has_more or not items:
                    break
                params["starting_after"] = items[-1]["id"]
        except stripe.StripeError as exc:
            raise _domain_error(exc) from exc
        if not found:
            return None
        return _intent(min(found, key=lambda i: (i.get("created") or 0, i["id"])))

    async def retrieve_payment_intent(self, payment_intent_id: str) -> PaymentIntent:
        """The intent as Stripe sees it now (to reconcile when a webhook went missing)."""
        try:
            intent = await self._client.v1.payment_intents.retrieve_async(payment_intent_id)
        except stripe.StripeError as exc:
            raise _domain_error(exc) from exc
        return _intent(_as_dict(intent))

    async def configure_webhook(self, url: str, secret: str, *, webhook_id: str = "passnum",
                                events: Sequence[str] | None = None) -> None:
        """Register a webhook endpoint on localstripe (its `/_config` API; Stripe has none)."""
        if not (self._localstripe and self._api_base):
            raise ValueError("webhooks are configured in Stripe's dashboard, not by API")
        data: dict[str, str] = {"url": url, "secret": secret}
        for i, event_type in enumerate(events or ()):
            data[f"events[{i}]"] = event_type
        async with httpx.AsyncClient(timeout=10) as http:
            response = await http.post(f"{self._api_base}/_config/webhooks/{webhook_id}",
                                       data=data)
        if response.status_code >= 300:
            raise PaymentProviderError(http_status=response.status_code, body=response.text)


def _localstripe_dialect(params: PaymentIntentCreateParams) -> Any:
    """The same request in the older API localstripe speaks (see the module docstring)."""
    old: dict[str, Any] = dict(params)
    old["payment_method_types"] = old.pop("allowed_payment_method_types")
    del old["description"]
    return old


def _as_dict(obj: Any) -> dict[str, Any]:
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


def _intent(obj: Mapping[str, Any],
            failure: tuple[str | None, str | None] | None = None) -> PaymentIntent:
    error = obj.get("last_payment_error") or {}
    metadata = obj.get("metadata") or {}
    code, message = failure or (error.get("code"), error.get("message"))
    return PaymentIntent(
        id=obj["id"],
        status=obj["status"],
        amount_cents=int(obj["amount"]),
        statement_id=metadata.get("statement_id"),
        failure_code=code,
        failure_message=message,
    )


def _domain_error(exc: stripe.StripeError) -> DomainError:
    if isinstance(exc, stripe.CardError):
        return PaymentRefused(stripe_code=exc.code, reason=exc.user_message)
    return PaymentProviderError(stripe_error=type(exc).__name__, http_status=exc.http_status,
                                stripe_code=exc.code, stripe_message=exc.user_message)
