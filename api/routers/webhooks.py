"""Stripe's webhooks: the signature is checked with `stripe_webhook_secret`, the event stored
by id and applied once to its statement (clearing.payments)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from api.deps import SessionDep, SettingsDep
from clearing import payments
from clearing.stripe_gateway import InvalidWebhookSignature, construct_event
from kit.clock import utcnow

router = APIRouter(prefix="/api/v1", tags=["webhooks"])


@router.post("/webhooks/stripe")
async def stripe_webhook(request: Request, session: SessionDep,
                         settings: SettingsDep) -> dict[str, Any]:
    if not settings.stripe_webhook_secret:
        raise InvalidWebhookSignature("Aucun secret de webhook Stripe n'est configuré.")
    payload = await request.body()
    event = construct_event(payload, request.headers.get("stripe-signature"),
                            settings.stripe_webhook_secret)
    outcome = await payments.handle_webhook(session, event, now=utcnow())
    return {"received": True, "event_id": outcome.event_id, "outcome": outcome.outcome}
