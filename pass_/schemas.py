"""Request and response models of the scheme (no tables here)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator

from pass_.enums import FinancerCategory, OrganisationKind, Qualification, Role, Service
from pass_.validation import validate_bic, validate_iban, validate_insee, validate_siret


class OrganisationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

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
