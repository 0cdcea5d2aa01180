"""Request and response models of the scheme (no tables here)."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator

from kit.clock import Day
from kit.errors import InvalidInput
from pass_.enums import (
    BookletStatus,
    ChequeStatus,
    DemarcheFamily,
    FinancerCategory,
    FinancerRole,
    NeedLevel,
    OrganisationKind,
    Qualification,
    Role,
    Service,
)
from pass_.validation import validate_bic, validate_iban, validate_insee, validate_siret


class OrganisationCreate(BaseModel):
    # Stripped before the length checks: a name of spaces is no name.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    kind: OrganisationKind
    name: str = Field(min_length=2, max_length=200)
    siret: str
    commune_insee: str
    address: str | None = Field(default=None, max_length=300)
    email: EmailStr | None = None
    iban: str | None = None
    bic: str | None = None
    financer_category: FinancerCategory | None = None
    services: list[Service] = Field(default_factory=list)

    _siret = field_validator("siret")(lambda v: validate_siret(v))
    _insee = field_validator("commune_insee")(lambda v: validate_insee(v))

    @field_validator("iban")
    @classmethod
    def _iban(cls, v: str | None) -> str | None:
        return validate_iban(v) if v else None

    @field_validator("bic")
    @classmethod
    def _bic(cls, v: str | None) -> str | None:
        return validate_bic(v) if v else None


class OrganisationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: OrganisationKind
    name: str
    siret: str
    commune_insee: str
    address: str | None
    email: str | None
    iban: str | None
    bic: str | None
    financer_category: FinancerCategory | None
    qualification: Qualification | None
    services: list[str]
    created_at: datetime | None


class BankDetailsUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    iban: str
    bic: str | None = None

    _iban = field_validator("iban")(lambda v: validate_iban(v))

    @field_validator("bic")
    @classmethod
    def _bic(cls, v: str | None) -> str | None:
        return validate_bic(v) if v else None


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: EmailStr
    password: str = Field(min_length=10, max_length=200)
    organisation_id: int
    role: Role


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    organisation_id: int
    role: Role
    is_active: bool


# --------------------------------------------------------------------------- issuance (issue 3)
# Shapes only: the rules between fields (dates in order, one state financer, capacity…) are
# checked by pass_.programmes, which names each broken rule with its own code.


class FinancerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    organisation_id: int
    role: FinancerRole
    commitment_cents: int
    weight: int = 1
    demarche_families: list[DemarcheFamily] = Field(default_factory=list)


class IssuerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    organisation_id: int
    quota_cheques: int


class ProgrammeCreate(BaseModel):
    """A programme as the operator declares it; missing dates take the scheme's defaults
    (from today, valid until 31 December, redeemable until 31 January of the next year)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=3, max_length=200)
    territory: list[str] = Field(max_length=200)
    face_value_cents: int = 1000
    booklet_sizes: list[int] = Field(default_factory=lambda: [5, 10], max_length=20)
    valid_from: Day | None = None
    valid_until: Day | None = None
    redeem_until: Day | None = None
    state_share_bp: int
    financer_fee_bp: int = 0
    site_commission_bp: int = 0
    financers: list[FinancerIn] = Field(max_length=50)
    issuers: list[IssuerIn] = Field(max_length=500)


class ProgrammeFinancerRead(BaseModel):
    organisation_id: int
    name: str
    position: int
    role: FinancerRole
    commitment_cents: int
    weight: int
    demarche_families: list[str]


class ProgrammeIssuerRead(BaseModel):
    organisation_id: int
    name: str
    quota_cheques: int
    issued_cheques: int  # quota used: cheques handed out and not cancelled
    remaining_cheques: int


class ProgrammeFigures(BaseModel):
    """Live figures: value of the programme's cheques by state, and what can still be issued."""

    issuing_capacity_cents: int
    issued_value_cents: int
    remaining_capacity_cents: int
    active_cents: int
    redeemed_cents: int
    expired_cents: int
    cancelled_cents: int
    in_stock_cheques: int


class ProgrammeRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    territory: list[str]
    face_value_cents: int
    booklet_sizes: list[int]
    valid_from: date
    valid_until: date
    redeem_until: date
    state_share_bp: int
    financer_fee_bp: int
    site_commission_bp: int
    issuing_capacity_cents: int
    issued_value_cents: int
    created_at: datetime | None


class ProgrammeDetail(ProgrammeRead):
    financers: list[ProgrammeFinancerRead]
    issuers: list[ProgrammeIssuerRead]
    figures: ProgrammeFigures


class BeneficiaryCreate(BaseModel):
    """Only what the scheme needs (DESIGN.md §8): no name, no social-security number."""

    model_config = ConfigDict(extra="forbid")

    reference: str = Field(min_length=1, max_length=64)
    need_level: NeedLevel
    birth_year: int | None = Field(default=None, ge=1900, le=2100)
    commune_insee: str | None = None

    @field_validator("reference")
    @classmethod
    def _reference(cls, v: str) -> str:
        text = " ".join(v.split())
        if not text or not text.isprintable():
            raise InvalidInput(
                "La référence doit être un texte lisible (lettres, chiffres, tirets).",
                code="invalid_reference",
                field="reference",
            )
        return text

    @field_validator("commune_insee")
    @classmethod
    def _commune(cls, v: str | None) -> str | None:
        return validate_insee(v) if v else None


class BeneficiaryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    reference: str | None
    need_level: int
    birth_year: int | None
    commune_insee: str | None
    created_at: datetime | None
    last_booklet_at: datetime | None
    pseudonymised_at: datetime | None


class BookletCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    programme_id: int
    beneficiary_id: int
    size: int


class HandOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    beneficiary_id: int


class BookletCancel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=3, max_length=300)


class OrderCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    issuer_id: int
    booklets: int = Field(ge=1, le=2000)
    size: int


class ChequeRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    position: int
    serial: str
    token: str
    value_cents: int
    valid_from: date
    valid_until: date
    redeem_until: date
    status: ChequeStatus
    activated_at: datetime | None


class BookletSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    number: str
    programme_id: int
    issuer_id: int
    beneficiary_id: int | None
    order_id: int | None
    size: int
    status: BookletStatus
    created_at: datetime | None
    handed_out_at: datetime | None
    cancelled_at: datetime | None
    cancel_reason: str | None
    check_code: str  # printed on the cover: with the number, opens /mon-pass


class BookletRead(BookletSummary):
    cheques: list[ChequeRead]


class BookletPage(BaseModel):
    items: list[BookletSummary]
    total: int
    page: int
    per_page: int


class OrderedBooklet(BaseModel):
    id: int
    number: str


class OrderRead(BaseModel):
    id: int
    programme_id: int
    issuer_id: int
    size: int
    booklet_count: int
    cheque_count: int
    created_at: datetime | None
    booklets: list[OrderedBooklet]
    pdf_url: str
