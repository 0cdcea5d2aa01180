"""Request and response models of redemption: check, redeem, reverse, list, offline batches."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from pass_.enums import ChequeStatus, DemarcheFamily, Service

# What a person types or a scanner reads; longer input is junk (a token is 140 characters).
MAX_CODE_LENGTH = 1000
MAX_BATCH_ITEMS = 500

# A client's idempotency key: 1 to 200 visible ASCII characters (idempotency_record.key).
IdempotencyKeyText = Annotated[
    str, StringConstraints(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")
]
ChequeCode = Annotated[str, StringConstraints(min_length=1, max_length=MAX_CODE_LENGTH)]


class RedemptionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: ChequeCode
    service: Service
    demarche_family: DemarcheFamily | None = None


class RedemptionRead(BaseModel):
    id: int
    cheque_serial: str
    value_cents: int
    redeemed_at: datetime
    site_id: int


class ChequeCheck(BaseModel):
    """A cheque as a site sees it before redeeming: can it be redeemed here today, else why."""

    serial: str
    status: ChequeStatus
    value_cents: int
    redeemable: bool
    reason: str | None = None
    message: str | None = None
    valid_from: date
    redeem_until: date
    redeemed_at: datetime | None = None


class OfflineScan(BaseModel):
    """One scan stored by a scanner without network, with its own idempotency key."""

    model_config = ConfigDict(extra="forbid")

    code: ChequeCode
    service: Service
    demarche_family: DemarcheFamily | None = None
    scanned_at: AwareDatetime
    idempotency_key: IdempotencyKeyText


class OfflineBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[OfflineScan] = Field(min_length=1, max_length=MAX_BATCH_ITEMS)


class OfflineItemResult(BaseModel):
    idempotency_key: str
    status: Literal["accepted", "refused", "conflict"]
    redemption: RedemptionRead | None = None
    error: dict[str, Any] | None = None


class OfflineBatchResult(BaseModel):
    results: list[OfflineItemResult]
    accepted: int
    refused: int
    conflicts: int


class RedemptionListItem(BaseModel):
    id: int
    cheque_serial: str
    value_cents: int
    service: Service
    demarche_family: DemarcheFamily | None
    redeemed_at: datetime
    scanned_at: datetime | None
    site_id: int
    reversed_at: datetime | None
    in_batch: bool
    reversible: bool


class RedemptionPage(BaseModel):
    items: list[RedemptionListItem]
    limit: int
    next_cursor: str | None = None
    page: int | None = None


class ReversalRead(BaseModel):
    id: int
    cheque_serial: str
    value_cents: int
    redeemed_at: datetime
    reversed_at: datetime
    site_id: int
