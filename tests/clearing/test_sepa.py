"""SEPA credit transfer files paying sites: valid pain.001.001.03, exact totals, bad IBANs held."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime
from decimal import Decimal
from uuid import UUID

import pytest
import xmlschema
from hypothesis import given
from hypothesis import strategies as st

from clearing.sepa import (
    NAMESPACE,
    SCHEMA_PATH,
    BankAccountInvalid,
    Party,
    SepaFileInvalid,
    Transfer,
    build_credit_transfer,
    end_to_end_id,
    format_amount,
    remittance_text,
    sepa_text,
    validate_pain001,
)

NS = {"p": NAMESPACE}
OPERATOR = Party("Opérateur du Pass numérique", "FR76 3000 6000 0112 3456 7890 189", "AGRIFRPP")
CREATED = datetime(2024, 2, 1, 23, 30, 5, tzinfo=UTC)
EXECUTION = date(2024, 2, 5)
# Valid French IBANs (checksums verified by schwifty), for the sites.
MEDIATHEQUE = Party("Médiathèque François-Mitterrand", "FR1420041010050500013M02606", "PSSTFRPP")
ASSO = Party("Association « Clic & Connecte »", "FR7630001007941234567890185")
BUS = Party("Bus numérique de l'Œise", "FR7610107001011234567890129", "BREDFRPP")


def _build(transfers: list[Transfer], message_id: str = "PN-LOT-12") -> object:
    return build_credit_transfer(message_id=message_id, debtor=OPERATOR, transfers=transfers,
                                 execution_date=EXECUTION, created_at=CREATED)


def _parse(xml: bytes) -> ET.Element:
    return ET.fromstring(xml)


def test_a_batch_file_validates_against_the_official_schema_with_exact_totals():
    transfers = [
        Transfer(345, MEDIATHEQUE, 123_456, remittance_text(12, 345)),
        Transfer(346, ASSO, 1, remittance_text(12, 346)),
        Transfer(347, BUS, 10, remittance_text(12, 347)),
        Transfer(348, MEDIATHEQUE, 1_000_000_007, remittance_text(12, 348)),
    ]
    sepa = _build(transfers)
    # An independent check with the schema file itself, beside the module's own validation.
    xmlschema.XMLSchema(str(SCHEMA_PATH)).validate(sepa.xml)
    validate_pain001(sepa.xml)

    nets = 123_456 + 1 + 10 + 1_000_000_007
    assert sepa.total_cents == nets
    assert sepa.count == 4
    assert sepa.held == []
    doc = _parse(sepa.xml)
    assert doc.findtext("p:CstmrCdtTrfInitn/p:GrpHdr/p:NbOfTxs", namespaces=NS) == "4"
    assert doc.findtext("p:CstmrCdtTrfInitn/p:GrpHdr/p:CtrlSum", namespaces=NS) == "10001234.74"
    assert doc.findtext("p:CstmrCdtTrfInitn/p:PmtInf/p:CtrlSum", namespaces=NS) == "10001234.74"
    assert doc.findtext("p:CstmrCdtTrfInitn/p:PmtInf/p:ReqdExctnDt", namespaces=NS) \
        == "2024-02-05"
    # 23:30 UTC on 1 February is 00:30 on 2 February in Paris.
    assert doc.findtext("p:CstmrCdtTrfInitn/p:GrpHdr/p:CreDtTm", namespaces=NS) \
        == "2024-02-02T00:30:05"
    assert doc.findtext(".//p:DbtrAcct/p:Id/p:IBAN", namespaces=NS) \
        == "FR7630006000011234567890189"

    txs = doc.findall(".//p:CdtTrfTxInf", NS)
    assert [t.findtext("p:PmtId/p:EndToEndId", namespaces=NS) for t in txs] \
        == ["345", "346", "347", "348"]
    amounts = [t.find("p:Amt/p:InstdAmt", NS) for t in txs]
    assert [a.text for a in amounts] == ["1234.56", "0.01", "0.10", "10000000.07"]
    assert {a.get("Ccy") for a in amounts} == {"EUR"}
    assert sum(Decimal(a.text) * 100 for a in amounts) == nets
    first = txs[0]
    assert first.findtext("p:Cdtr/p:Nm", namespaces=NS) == "Mediatheque Francois-Mitterrand"
    assert first.findtext("p:CdtrAcct/p:Id/p:IBAN", namespaces=NS) \
        == "FR1420041010050500013M02606"
    assert first.findtext("p:CdtrAgt/p:FinInstnId/p:BIC", namespaces=NS) == "PSSTFRPP"
    assert first.findtext("p:RmtInf/p:Ustrd", namespaces=NS) \
        == "Pass numerique lot 12 releve 345"
    # No BIC given: no creditor agent (IBAN-only is allowed in SEPA).
    assert txs[1].find("p:CdtrAgt", NS) is None
    assert txs[1].findtext("p:Cdtr/p:Nm", namespaces=NS) == "Association Clic + Connecte"


def test_sites_with_a_missing_or_invalid_iban_are_held_with_a_french_reason():
    transfers = [
        Transfer(1, MEDIATHEQUE, 5_000, remittance_text(3, 1)),
        Transfer(2, Party("Tiers-lieu sans IBAN", None), 2_000, remittance_text(3, 2)),
        Transfer(3, Party("Tiers-lieu IBAN faux", "FR7630006000011234567890188"), 3_000,
                 remittance_text(3, 3)),
        Transfer(4, Party("BIC faux", "FR7630001007941234567890185", "AGRI"), 4_000,
                 remittance_text(3, 4)),
        Transfer(5, ASSO, 0, remittance_text(3, 5)),
        Transfer(6, Party("Hors SEPA", "BR1800360305000010009795493C1"), 6_000,
                 remittance_text(3, 6)),
    ]
    sepa = _build(transfers)
    validate_pain001(sepa.xml)
    assert sepa.count == 1
    assert sepa.total_cents == 5_000
    assert sepa.end_to_end_ids == ("1",)
    held = {h.transfer.statement_id: (h.code, h.reason) for h in sepa.held}
    assert held == {
        2: ("iban_missing", "IBAN manquant : virement suspendu jusqu'à sa saisie."),
        3: ("iban_invalid",
            "IBAN invalide (clé de contrôle incorrecte) : virement suspendu jusqu'à sa "
            "correction."),
        4: ("bic_invalid",
            "BIC invalide (longueur incorrecte) : virement suspendu jusqu'à sa correction."),
        5: ("amount_not_positive", "Montant nul ou négatif : aucun virement à émettre."),
        6: ("iban_invalid",
            "IBAN hors de la zone SEPA : virement suspendu jusqu'à sa correction."),
    }
    ids = [e.text for e in _parse(sepa.xml).iter(f"{{{NAMESPACE}}}EndToEndId")]
    assert ids == ["1"]


def test_when_every_site_is_held_there_is_no_file():
    sepa = _build([Transfer(9, Party("Sans IBAN", ""), 1_000, "x")])
    assert sepa.xml is None
    assert (sepa.count, sepa.total_cents, len(sepa.held)) == (0, 0, 1)


def test_the_same_batch_gives_the_same_file_byte_for_byte():
    transfers = [Transfer(UUID(int=345), MEDIATHEQUE, 1003, remittance_text(12, 345)),
                 Transfer(UUID(int=346), BUS, 2006, remittance_text(12, 346))]
    first, second = _build(transfers), _build(transfers)
    assert first.xml == second.xml
    # A UUID statement id fits Max35Text without its hyphens.
    assert first.end_to_end_ids == (UUID(int=345).hex, UUID(int=346).hex)


def test_an_invalid_debtor_account_refuses_the_whole_file():
    with pytest.raises(BankAccountInvalid) as caught:
        build_credit_transfer(message_id="PN-1", debtor=Party("Opérateur", None),
                              transfers=[Transfer(1, ASSO, 100, "x")],
                              execution_date=EXECUTION, created_at=CREATED)
    assert caught.value.code == "iban_missing"
    assert caught.value.message.startswith("Compte du donneur d'ordre")


def test_a_statement_cannot_be_paid_twice_in_one_file():
    with pytest.raises(ValueError, match="twice"):
        _build([Transfer(1, ASSO, 100, "x"), Transfer(1, ASSO, 100, "x")])


def test_a_file_that_breaks_the_schema_is_refused():
    sepa = _build([Transfer(1, ASSO, 100, "x")])
    broken = sepa.xml.replace(b"<NbOfTxs>1</NbOfTxs>", b"", 1)
    with pytest.raises(SepaFileInvalid) as caught:
        validate_pain001(broken)
    assert caught.value.code == "sepa_file_invalid"
    assert caught.value.details["errors"]
    with pytest.raises(SepaFileInvalid):
        validate_pain001(sepa.xml.replace(b"FR7630001007941234567890185", b"fr76-pas-un-iban"))


@given(st.integers(0, 10**15))
def test_amounts_are_written_exactly_from_cents(cents):
    text = format_amount(cents)
    assert Decimal(text) * 100 == cents
    assert len(text.split(".")[1]) == 2


@pytest.mark.parametrize(("raw", "expected"), [
    ("Pass numérique lot 12 relevé 345", "Pass numerique lot 12 releve 345"),
    ("Cœur d'Alène & Æsir", "Coeur d'Alene + AEsir"),
    ("Tiers‑lieu « Le_Hub » n° 3 ; 50 %", "Tiers-lieu Le-Hub no 3 50"),
    ("", "NOTPROVIDED"),
])
def test_text_is_reduced_to_the_sepa_character_set(raw, expected):
    assert sepa_text(raw, 140) == expected


def test_long_names_are_cut_to_seventy_characters():
    assert len(sepa_text("Médiathèque " * 10, 70)) <= 70


@pytest.mark.parametrize("bad", ["", "a" * 36, "/lead", "trail/", "a//b", "é"])
def test_an_end_to_end_reference_must_be_sepa_max35_text(bad):
    with pytest.raises(ValueError):
        end_to_end_id(bad)
