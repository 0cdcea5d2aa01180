"""The Chorus Pro client against a local server (issue 14).

Chorus Pro (and PISTE, its API gateway) cannot be reached from here: `FakeChorusPro` below is
written in the tests from the published API as `clearing/chorus.py` describes it — PISTE's
client-credentials token endpoint, the `cpro-account` header, `deposer/flux` with syntax
IN_DP_E2_CII_FACTURX, `rechercher/fournisseur` and `consulter/fournisseur` — and checks what a
real server would refuse (no token, no technical account, a PDF without its Factur-X XML)."""

from __future__ import annotations

import base64
import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import facturx
import pytest
from sqlalchemy import text

from clearing import chorus
from clearing.batches import close_batch
from clearing.invoices import list_invoices
from kit.clock import utcnow
from pass_.tokens import Keyring
from tests.clearing.factories import (
    issue_cheques,
    make_scheme,
    make_site,
    paris,
    redeem,
    unique_cutoff,
)

TOKEN = "jeton-piste-de-test"
ACCOUNT = base64.b64encode(b"TECH_passnum@cpro.fr:motdepasse").decode()
# What Chorus Pro answers, consultation after consultation, for one invoice.
LIFE = ["DEPOSEE", "MISE_A_DISPOSITION", "SERVICE_FAIT", "MISE_EN_PAIEMENT"]


class FakeChorusPro:
    def __init__(self) -> None:
        self.flows: dict[str, dict[str, object]] = {}  # numeroFluxDepot → invoice
        self.consultations: dict[int, int] = {}
        self.calls: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, status: int, body: dict[str, object]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fake.calls.append(self.path)
                if self.path == "/api/oauth/token":
                    form = parse_qs(raw.decode())
                    if (form.get("grant_type") != ["client_credentials"]
                            or form.get("client_secret") != ["secret"]):
                        return self._answer(401, {"error": "invalid_client"})
                    return self._answer(200, {"access_token": TOKEN, "token_type": "Bearer",
                                              "expires_in": 3600, "scope": "openid"})
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self._answer(401, {"error": "invalid_token"})
                if self.headers.get("cpro-account") != ACCOUNT:
                    return self._answer(401, {"codeRetour": 1, "libelle": "compte technique"})
                body = json.loads(raw)
                if self.path == "/cpro/factures/v1/deposer/flux":
                    if body.get("syntaxeFlux") != "IN_DP_E2_CII_FACTURX":
                        return self._answer(400, {"codeRetour": 2, "libelle": "syntaxe"})
                    pdf = base64.b64decode(body["fichierFlux"])
                    try:
                        _name, xml = facturx.get_xml_from_pdf(pdf, check_xsd=True)
                    except Exception:
                        return self._answer(200, {"codeRetour": 3, "libelle": "pas Factur-X"})
                    number = xml.split(b"<ram:ID>", 2)[2].split(b"<", 1)[0].decode()
                    flow = f"FLUX{len(fake.flows) + 1:06d}"
                    fake.flows[flow] = {"number": number, "id": 9000 + len(fake.flows)}
                    return self._answer(200, {"codeRetour": 0, "libelle": "OK",
                                              "numeroFluxDepot": flow,
                                              "dateDepot": "2026-12-05"})
                if self.path == "/cpro/factures/v1/rechercher/fournisseur":
                    found = [{"identifiantFactureCPP": f["id"], "numeroFacture": f["number"],
                              "statut": "DEPOSEE"} for f in fake.flows.values()
                             if f["number"] == body.get("numeroFacture")]
                    return self._answer(200, {"codeRetour": 0, "listeFactures": found})
                if self.path == "/cpro/factures/v1/consulter/fournisseur":
                    cid = int(body["identifiantFactureCPP"])
                    step = fake.consultations[cid] = fake.consultations.get(cid, 0) + 1
                    return self._answer(200, {"codeRetour": 0,
                                              "statutFacture": LIFE[min(step, len(LIFE) - 1)]})
                return self._answer(404, {"codeRetour": 404, "libelle": "inconnu"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeChorusPro:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_chorus() -> Iterator[FakeChorusPro]:
    with FakeChorusPro() as fake:
        yield fake


def config(fake: FakeChorusPro, secret: str = "secret") -> chorus.ChorusConfig:
    return chorus.ChorusConfig(api_base=fake.url, token_url=f"{fake.url}/api/oauth/token",
                               client_id="passnum", client_secret=secret,
                               login="TECH_passnum@cpro.fr", password="motdepasse",
                               user_id=12345)


@pytest.fixture(scope="module")
def keyring(tmp_path_factory: pytest.TempPathFactory) -> Keyring:
    return Keyring.load_or_create(tmp_path_factory.mktemp("clearing-chorus") / "keys")


async def test_public_invoices_are_deposited_then_followed_to_mise_en_paiement(
        session, keyring, fake_chorus) -> None:
    scheme = await make_scheme(session, keyring)
    await session.execute(text(
        "UPDATE organisation SET financer_category = CASE WHEN id = :s THEN 'state' "
        "ELSE 'organisme' END WHERE id = ANY(:ids)"),
        {"s": scheme.financer_id(0), "ids": [scheme.financer_id(0), scheme.financer_id(1)]})
    site = await make_site(session)
    for i, cheque in enumerate(await issue_cheques(session, scheme, 3)):
        await redeem(session, scheme, site, cheque, at=paris(2024, 1, 3 + i))
    batch, _ = await close_batch(session, cutoff=unique_cutoff(), now=utcnow())
    state = next(i for i in await list_invoices(session, batch_id=batch.id)
                 if i.financer_id == scheme.financer_id(0))

    deposited = await chorus.deposit_due(session, config(fake_chorus))

    assert state.number in deposited
    assert len([n for n in deposited if n.startswith("PN-")]) == len(deposited)
    row = (await session.execute(text(
        "SELECT status, chorus_flow_id FROM invoice WHERE id = :i"), {"i": state.id})).one()
    assert row.status == "deposited" and row.chorus_flow_id.startswith("FLUX")
    private = next(i for i in await list_invoices(session, batch_id=batch.id)
                   if i.financer_id == scheme.financer_id(1))
    assert private.chorus_flow_id is None  # not a public body: not deposited
    assert await chorus.deposit_due(session, config(fake_chorus)) == []  # never twice
    with pytest.raises(chorus.InvoiceNotDepositable):
        await chorus.deposit_one(session, config(fake_chorus), state.id)

    statuses = []
    for _ in range(5):
        statuses.append((await chorus.follow(session, config(fake_chorus))).get(state.number))
    assert statuses[:4] == ["DEPOSEE", "MISE_A_DISPOSITION", "SERVICE_FAIT",
                            "MISE_EN_PAIEMENT"]
    assert statuses[4] is None  # final: no longer polled
    final = (await session.execute(text(
        "SELECT status, chorus_status FROM invoice WHERE id = :i"), {"i": state.id})).one()
    assert final == ("in_payment", "MISE_EN_PAIEMENT")


async def test_a_refused_authentication_or_no_configuration_is_a_clear_error(
        session, fake_chorus) -> None:
    with pytest.raises(chorus.ChorusNotConfigured):
        await chorus.deposit_due(session, None)
    client = chorus.ChorusClient(config(fake_chorus, secret="wrong"))
    try:
        with pytest.raises(chorus.ChorusError):
            await client.deposit(b"%PDF-1.4", "x.pdf")
    finally:
        await client.aclose()
    client = chorus.ChorusClient(config(fake_chorus))
    try:
        with pytest.raises(chorus.ChorusError):  # a PDF without its Factur-X XML
            await client.deposit(io.BytesIO(b"%PDF-1.4 not factur-x").getvalue(), "x.pdf")
    finally:
        await client.aclose()
