"""SEPA credit transfer files (pain.001.001.03) paying sites their statements, schema-checked.

One file per batch: the operator is the debtor, each site statement is one transaction whose
end-to-end reference is the statement id. Sites whose IBAN is missing or invalid are *held*
(returned apart, with a French reason) rather than put in a file the bank would reject.

Why not `sepaxml`: it stamps the file with the machine's local clock and random message and
payment ids, so the same batch would give a different file each time; an independent audit must
be able to rebuild the file byte for byte from the journal. The file is therefore built here
with the standard library, from values passed in, and validated against the official XSD
(shipped by sepaxml, copied into `clearing/schemas/`). Amounts never go through a float.
"""

from __future__ import annotations

import re
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cache
from pathlib import Path
from uuid import UUID

import xmlschema
from schwifty import BIC, IBAN, exceptions

from kit.clock import PARIS
from kit.errors import DomainError, InvalidInput

NAMESPACE = "urn:iso:std:iso:20022:tech:xsd:pain.001.001.03"
SCHEMA_PATH = Path(__file__).parent / "schemas" / "pain.001.001.03.xsd"

# The EPC's SEPA character set (basic Latin); anything else is transliterated or replaced,
# because banks may reject a file carrying other characters.
_NOT_SEPA = re.compile(r"[^A-Za-z0-9/\-?:().,'+ ]")
_LIGATURES = str.maketrans({
    "œ": "oe", "Œ": "OE", "æ": "ae", "Æ": "AE", "ß": "ss", "&": "+", "’": "'", "°": "o",
    "_": "-", "‐": "-", "‑": "-", "‒": "-", "–": "-", "—": "-", "«": "", "»": "",
})
_ID = re.compile(r"^[A-Za-z0-9/\-?:().,'+]{1,35}$")


class SepaFileInvalid(DomainError):
    code = "sepa_file_invalid"
    message = "Le fichier de virements SEPA n'est pas conforme au schéma pain.001.001.03."


@dataclass(frozen=True, slots=True)
class Party:
    """A holder of a bank account: the operator (debtor) or a site (creditor)."""

    name: str
    iban: str | None
    bic: str | None = None


@dataclass(frozen=True, slots=True)
class Transfer:
    """One site statement to pay: its id becomes the end-to-end reference."""

    statement_id: str | int | UUID
    creditor: Party
    amount_cents: int
    remittance_info: str  # e.g. remittance_text(batch_number, statement_number)


@dataclass(frozen=True, slots=True)
class Held:
    """A transfer left out of the file, with why (French, for the operator)."""

    transfer: Transfer
    code: str  # "iban_missing" | "iban_invalid" | "bic_invalid" | "amount_not_positive"
    reason: str


@dataclass(frozen=True, slots=True)
class SepaFile:
    """The file to hand to the bank, with its totals; `xml` is None when nothing is payable."""

    xml: bytes | None
    total_cents: int
    count: int
    end_to_end_ids: tuple[str, ...] = ()
    held: list[Held] = field(default_factory=list)


def remittance_text(batch_number: int | str, statement_number: int | str) -> str:
    """The unstructured remittance line the site reads on its bank statement."""
    return f"Pass numérique lot {batch_number} relevé {statement_number}"


def end_to_end_id(statement_id: str | int | UUID) -> str:
    """The statement id as an end-to-end reference (Max35Text: a UUID goes without hyphens)."""
    text = statement_id.hex if isinstance(statement_id, UUID) else str(statement_id)
    if not _ID.match(text) or text.startswith("/") or text.endswith("/") or "//" in text:
        raise ValueError(f"{text!r} cannot be a SEPA end-to-end reference")
    return text


def sepa_text(text: str, max_length: int) -> str:
    """`text` in the SEPA character set, accents removed, cut to `max_length`."""
    text = unicodedata.normalize("NFKD", text.translate(_LIGATURES))
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = " ".join(_NOT_SEPA.sub(" ", text).split())
    return text[:max_length].rstrip() or "NOTPROVIDED"


def format_amount(cents: int) -> str:
    """Cents as the XML decimal the bank reads: 1234 → "12.34"."""
    if cents < 0:
        raise ValueError("negative amount")
    return f"{cents // 100}.{cents % 100:02d}"


class BankAccountInvalid(InvalidInput):
    """A missing or invalid IBAN/BIC; `code` says which (iban_missing, iban_invalid, …)."""

    code = "iban_invalid"
    message = "Coordonnées bancaires invalides."


_WHY = {
    exceptions.InvalidChecksumDigits: "clé de contrôle incorrecte",
    exceptions.InvalidBBANChecksum: "clé RIB incorrecte",
    exceptions.InvalidLength: "longueur incorrecte",
    exceptions.InvalidCountryCode: "code pays inconnu",
    exceptions.InvalidBankCode: "code banque inconnu",
    exceptions.InvalidBranchCode: "code guichet inconnu",
    exceptions.InvalidAccountCode: "numéro de compte incorrect",
}


def _why(exc: exceptions.SchwiftyException) -> str:
    return _WHY.get(type(exc), "format incorrect")


def check_account(party: Party) -> tuple[str, str | None]:
    """The party's (IBAN, BIC) in compact form; BankAccountInvalid says in French why not."""
    if not party.iban or not party.iban.strip():
        raise BankAccountInvalid("IBAN manquant : virement suspendu jusqu'à sa saisie.",
                                 code="iban_missing")
    try:
        iban = IBAN(party.iban)
    except exceptions.SchwiftyException as exc:
        raise BankAccountInvalid(
            f"IBAN invalide ({_why(exc)}) : virement suspendu jusqu'à sa correction.",
            code="iban_invalid") from exc
    if not iban.in_sepa_zone:
        raise BankAccountInvalid(
            "IBAN hors de la zone SEPA : virement suspendu jusqu'à sa correction.",
            code="iban_invalid")
    bic: str | None = None
    if party.bic and party.bic.strip():
        try:
            bic = BIC(party.bic).compact
        except exceptions.SchwiftyException as exc:
            raise BankAccountInvalid(
                f"BIC invalide ({_why(exc)}) : virement suspendu jusqu'à sa correction.",
                code="bic_invalid") from exc
    return iban.compact, bic


def build_credit_transfer(*, message_id: str, debtor: Party, transfers: Sequence[Transfer],
                          execution_date: date, created_at: datetime) -> SepaFile:
    """A pain.001.001.03 file paying `transfers` from the debtor's account, schema-validated.

    Transfers to a missing or invalid account, or of a non-positive amount, are held and
    listed in `SepaFile.held`; the others are in the file, in the order given. The output is
    a pure function of the arguments. `created_at` must be timezone-aware; it is written in
    Paris time without offset, as French banks' implementation guides show it.
    """
    msg_id = end_to_end_id(message_id)
    try:
        debtor_iban, debtor_bic = check_account(debtor)
    except BankAccountInvalid as refused:
        raise BankAccountInvalid(f"Compte du donneur d'ordre : {refused.message}",
                                 code=refused.code) from refused
    if created_at.tzinfo is None:
        raise ValueError("created_at must be timezone-aware")

    payable: list[tuple[Transfer, str, str | None, str]] = []
    held: list[Held] = []
    seen: set[str] = set()
    for transfer in transfers:
        e2e = end_to_end_id(transfer.statement_id)
        if e2e in seen:
            raise ValueError(f"statement {e2e} appears twice in the same file")
        seen.add(e2e)
        if not isinstance(transfer.amount_cents, int) or transfer.amount_cents <= 0:
            held.append(Held(transfer, "amount_not_positive",
                             "Montant nul ou négatif : aucun virement à émettre."))
            continue
        try:
            iban, bic = check_account(transfer.creditor)
        except BankAccountInvalid as refused:
            held.append(Held(transfer, refused.code, refused.message))
            continue
        payable.append((transfer, iban, bic, e2e))

    total = sum(t.amount_cents for t, *_ in payable)
    if not payable:
        return SepaFile(xml=None, total_cents=0, count=0, held=held)

    # Unqualified tags under a default namespace declared by hand: ElementTree cannot write a
    # default namespace when an attribute (Ccy) is unqualified.
    document = ET.Element("Document", xmlns=NAMESPACE)
    root = ET.SubElement(document, "CstmrCdtTrfInitn")
    header = ET.SubElement(root, "GrpHdr")
    _text(header, "MsgId", msg_id)
    _text(header, "CreDtTm",
          created_at.astimezone(PARIS).replace(tzinfo=None, microsecond=0).isoformat())
    _text(header, "NbOfTxs", str(len(payable)))
    _text(header, "CtrlSum", format_amount(total))
    _text(ET.SubElement(header, "InitgPty"), "Nm", sepa_text(debtor.name, 70))

    info = ET.SubElement(root, "PmtInf")
    _text(info, "PmtInfId", msg_id)
    _text(info, "PmtMtd", "TRF")
    _text(info, "BtchBookg", "true")
    _text(info, "NbOfTxs", str(len(payable)))
    _text(info, "CtrlSum", format_amount(total))
    _text(ET.SubElement(ET.SubElement(info, "PmtTpInf"), "SvcLvl"), "Cd", "SEPA")
    _text(info, "ReqdExctnDt", execution_date.isoformat())
    _text(ET.SubElement(info, "Dbtr"), "Nm", sepa_text(debtor.name, 70))
    _account_element(info, "DbtrAcct", debtor_iban)
    _agent_element(info, "DbtrAgt", debtor_bic)
    _text(info, "ChrgBr", "SLEV")

    for transfer, iban, bic, e2e in payable:
        tx = ET.SubElement(info, "CdtTrfTxInf")
        _text(ET.SubElement(tx, "PmtId"), "EndToEndId", e2e)
        amount = ET.SubElement(ET.SubElement(tx, "Amt"), "InstdAmt", Ccy="EUR")
        amount.text = format_amount(transfer.amount_cents)
        if bic:
            _agent_element(tx, "CdtrAgt", bic)
        _text(ET.SubElement(tx, "Cdtr"), "Nm", sepa_text(transfer.creditor.name, 70))
        _account_element(tx, "CdtrAcct", iban)
        _text(ET.SubElement(tx, "RmtInf"), "Ustrd",
              sepa_text(transfer.remittance_info, 140))

    ET.indent(document)
    # A double-quoted declaration, as in the banks' samples.
    xml = (b'<?xml version="1.0" encoding="UTF-8"?>\n'
           + ET.tostring(document, encoding="unicode").encode())
    validate_pain001(xml)
    return SepaFile(xml=xml, total_cents=total, count=len(payable),
                    end_to_end_ids=tuple(e2e for *_, e2e in payable), held=held)


def validate_pain001(xml: bytes) -> None:
    """Raise SepaFileInvalid unless `xml` is valid against the pain.001.001.03 schema."""
    errors = [str(error.reason or error) for error in _schema().iter_errors(xml)]
    if errors:
        raise SepaFileInvalid(errors=errors[:20])


@cache
def _schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(SCHEMA_PATH))


def _text(parent: ET.Element, tag: str, text: str) -> ET.Element:
    element = ET.SubElement(parent, tag)
    element.text = text
    return element


def _account_element(parent: ET.Element, tag: str, iban: str) -> None:
    _text(ET.SubElement(ET.SubElement(parent, tag), "Id"), "IBAN", iban)


def _agent_element(parent: ET.Element, tag: str, bic: str | None) -> None:
    institution = ET.SubElement(ET.SubElement(parent, tag), "FinInstnId")
    if bic:
        _text(institution, "BIC", bic)
    else:
        # The EPC's convention when the debtor's BIC is not given (IBAN-only, since 2016).
        _text(ET.SubElement(institution, "Othr"), "Id", "NOTPROVIDED")
