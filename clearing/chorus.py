"""Chorus Pro over PISTE (issue 14): deposit an invoice's Factur-X PDF, then follow it up to
« mise en paiement ». Off by default; invoices can always be downloaded and uploaded by hand.

The published API, as this client uses it:
- PISTE's OAuth2 token endpoint, client-credentials grant (`client_id`, `client_secret` in the
  form, scope `openid`) → `{access_token, expires_in}`; every call then carries
  `Authorization: Bearer …` and `cpro-account: base64(login:password)` (the Chorus Pro
  technical account);
- `POST /cpro/factures/v1/deposer/flux` `{idUtilisateurCourant, fichierFlux (base64),
  nomFichier, syntaxeFlux: "IN_DP_E2_CII_FACTURX", avecSignature: false}` →
  `{codeRetour: 0, libelle, numeroFluxDepot, dateDepot}`;
- `POST /cpro/factures/v1/rechercher/fournisseur` `{numeroFacture}` → `{listeFactures:
  [{identifiantFactureCPP, numeroFacture, statut}]}` (the invoice once the flow is integrated);
- `POST /cpro/factures/v1/consulter/fournisseur` `{identifiantFactureCPP}` →
  `{codeRetour: 0, statutFacture}` (DEPOSEE, MISE_A_DISPOSITION, … MISE_EN_PAIEMENT, REJETEE…).

Chorus Pro is unreachable from here: tests run this client against a local server written in
the tests from that description (tests/clearing/test_chorus.py).
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import Any

import httpx
import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from clearing.invoices import InvoiceDetail, cheque_rows, get_invoice
from clearing.invoices_facturx import facturx_pdf
from kit.clock import utcnow
from kit.errors import Conflict, DomainError

log = structlog.get_logger()

SYNTAX = "IN_DP_E2_CII_FACTURX"
IN_PAYMENT = "MISE_EN_PAIEMENT"
# Chorus Pro statuses after which nothing more moves on its side for us.
FINAL = {IN_PAYMENT, "REJETEE", "SUSPENDUE", "COMPTABILISEE"}
STATUS_LABELS = {
    "DEPOSEE": "déposée", "EN_COURS_ACHEMINEMENT": "en cours d'acheminement",
    "MISE_A_DISPOSITION": "mise à disposition de l'acheteur", "A_RECYCLER": "à recycler",
    "REJETEE": "rejetée", "SUSPENDUE": "suspendue", "SERVICE_FAIT": "service fait",
    "MANDATEE": "mandatée", IN_PAYMENT: "mise en paiement", "COMPTABILISEE": "comptabilisée",
}


class ChorusNotConfigured(DomainError):
    code = "chorus_not_configured"
    message = ("Le dépôt sur Chorus Pro n'est pas configuré : téléchargez la facture et "
               "déposez-la à la main sur le portail.")


class ChorusError(DomainError):
    code = "chorus_error"
    message = "Chorus Pro a refusé la demande ou n'a pas répondu."


class InvoiceNotDepositable(Conflict):
    code = "invoice_not_depositable"
    message = "Cette facture est déjà déposée sur Chorus Pro ou déjà payée."


@dataclass(frozen=True, slots=True)
class ChorusConfig:
    api_base: str
    token_url: str
    client_id: str
    client_secret: str
    login: str
    password: str
    user_id: int


class ChorusClient:
    """The few calls of the Chorus Pro API that depositing and following an invoice needs."""

    def __init__(self, config: ChorusConfig, *, timeout: float = 30.0) -> None:
        self._config = config
        self._http = httpx.AsyncClient(base_url=config.api_base.rstrip("/"), timeout=timeout)
        self._token: str | None = None
        self._expires = 0.0

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _bearer(self) -> str:
        if self._token is None or time.monotonic() > self._expires - 30:
            answer = await self._http.post(self._config.token_url, data={
                "grant_type": "client_credentials", "client_id": self._config.client_id,
                "client_secret": self._config.client_secret, "scope": "openid"})
            if answer.status_code != 200:
                raise ChorusError("PISTE a refusé l'authentification de l'application.",
                                  status=answer.status_code)
            body = answer.json()
            self._token = body["access_token"]
            self._expires = time.monotonic() + float(body.get("expires_in", 3600))
        return self._token

    async def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        account = base64.b64encode(
            f"{self._config.login}:{self._config.password}".encode()).decode()
        try:
            answer = await self._http.post(path, json=payload, headers={
                "Authorization": f"Bearer {await self._bearer()}", "cpro-account": account,
                "Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise ChorusError(path=path) from exc
        body = answer.json() if answer.headers.get("content-type", "").startswith(
            "application/json") else {}
        if answer.status_code != 200 or body.get("codeRetour", 0) != 0:
            reason = body.get("libelle") or answer.status_code
            raise ChorusError(f"Chorus Pro a refusé la demande : {reason}.",
                              path=path, status=answer.status_code)
        return body

    async def deposit(self, pdf: bytes, filename: str) -> str:
        """Deposit a Factur-X PDF; returns the flow number (numeroFluxDepot)."""
        body = await self._post("/cpro/factures/v1/deposer/flux", {
            "idUtilisateurCourant": self._config.user_id,
            "fichierFlux": base64.b64encode(pdf).decode(), "nomFichier": filename,
            "syntaxeFlux": SYNTAX, "avecSignature": False})
        return str(body["numeroFluxDepot"])

    async def find(self, number: str) -> tuple[str, str] | None:
        """(identifiantFactureCPP, statut) of our invoice `number`, once Chorus Pro has it."""
        body = await self._post("/cpro/factures/v1/rechercher/fournisseur",
                                {"numeroFacture": number})
        for found in body.get("listeFactures") or []:
            if found.get("numeroFacture") == number:
                return str(found["identifiantFactureCPP"]), str(found.get("statut", ""))
        return None

    async def status(self, chorus_id: str) -> str:
        body = await self._post("/cpro/factures/v1/consulter/fournisseur",
                                {"identifiantFactureCPP": int(chorus_id)})
        return str(body.get("statutFacture") or body.get("statut") or "")


def _require(config: ChorusConfig | None) -> ChorusConfig:
    if config is None:
        raise ChorusNotConfigured()
    return config


async def _deposit(session: AsyncSession, client: ChorusClient, invoice: InvoiceDetail) -> str:
    pdf = facturx_pdf(invoice, await cheque_rows(session, invoice))
    flow = await client.deposit(pdf, f"{invoice.number}.pdf")
    await session.execute(text("""
        UPDATE invoice SET chorus_flow_id = :flow, chorus_status = 'DEPOSEE',
               deposited_at = :now,
               status = CASE WHEN status = 'issued' THEN 'deposited' ELSE status END
        WHERE id = :id"""), {"flow": flow, "now": utcnow(), "id": invoice.id})
    log.info("chorus_deposited", invoice=invoice.number, flow=flow)
    return flow


async def deposit_one(session: AsyncSession, config: ChorusConfig | None,
                      invoice_id: int) -> str:
    """Deposit one invoice (never twice); returns a French sentence for the operator."""
    client = ChorusClient(_require(config))
    try:
        invoice = await get_invoice(session, invoice_id)
        if invoice.chorus_flow_id or invoice.status == "paid":
            raise InvoiceNotDepositable(invoice_id=invoice_id)
        flow = await _deposit(session, client, invoice)
    finally:
        await client.aclose()
    return f"Facture {invoice.number} déposée sur Chorus Pro (flux n° {flow})."


async def deposit_due(session: AsyncSession, config: ChorusConfig | None) -> list[str]:
    """Deposit every unpaid invoice (380 and 381) of a public financer not yet deposited."""
    client = ChorusClient(_require(config))
    done = []
    try:
        ids = (await session.execute(text("""
            SELECT i.id FROM invoice i JOIN organisation o ON o.id = i.financer_id
            WHERE i.chorus_flow_id IS NULL AND i.status = 'issued'
              AND o.financer_category IN ('state', 'region', 'departement', 'epci', 'commune')
            ORDER BY i.id"""))).scalars().all()
        for invoice_id in ids:
            invoice = await get_invoice(session, invoice_id)
            await _deposit(session, client, invoice)
            done.append(invoice.number)
    finally:
        await client.aclose()
    return done


async def follow(session: AsyncSession, config: ChorusConfig | None) -> dict[str, str]:
    """Poll each deposited invoice's Chorus Pro status; « mise en paiement » moves ours to
    `in_payment` (paid comes from the bank statement). Returns number → Chorus status."""
    client = ChorusClient(_require(config))
    seen: dict[str, str] = {}
    try:
        rows = (await session.execute(text("""
            SELECT id, number, chorus_invoice_id, chorus_status FROM invoice
            WHERE chorus_flow_id IS NOT NULL AND status IN ('deposited', 'in_payment')
              AND coalesce(chorus_status, '') <> ALL(:final) ORDER BY id"""),
            {"final": sorted(FINAL)})).all()
        for invoice_id, number, chorus_id, _status in rows:
            if chorus_id is None:
                found = await client.find(number)
                if found is None:
                    continue  # the flow is not integrated yet
                chorus_id, status = found
            else:
                status = await client.status(chorus_id)
            await session.execute(text("""
                UPDATE invoice SET chorus_invoice_id = :cid, chorus_status = :st,
                       status = CASE WHEN :in_payment AND status = 'deposited'
                                     THEN 'in_payment' ELSE status END
                WHERE id = :id"""),
                {"cid": chorus_id, "st": status[:64], "in_payment": status == IN_PAYMENT,
                 "id": invoice_id})
            seen[number] = status
    finally:
        await client.aclose()
    return seen
