"""A financer's participation in a programme, as a buyer (issue 14): its engagement number
(BT-13), Chorus Pro code service (BT-10), what its Chorus Pro structure requires, and how it
pays. Edited by the operator; read by invoicing and the warnings of the operator's pages."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from kit.errors import InvalidInput, NotFound

PUBLIC_CATEGORIES = ("state", "region", "departement", "epci", "commune")


class ParticipationUpdate(BaseModel):
    """PATCH /api/v1/programmes/{id}/financers/{organisation_id}: only the fields sent change;
    an empty string clears one."""

    model_config = ConfigDict(extra="forbid")

    engagement_number: str | None = Field(default=None, max_length=50)
    service_code: str | None = Field(default=None, max_length=100)
    payment_method: Literal["transfer", "stripe_sepa"] | None = None
    requires_engagement: bool | None = None
    requires_service_code: bool | None = None

    @field_validator("engagement_number", "service_code")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if any(not c.isprintable() for c in value):
            raise InvalidInput("Caractères non imprimables refusés.")
        return value


class Participation(BaseModel):
    programme_id: int
    organisation_id: int
    organisation_name: str
    financer_category: str | None
    engagement_number: str | None
    service_code: str | None
    payment_method: str | None
    requires_engagement: bool
    requires_service_code: bool

    @property
    def is_public(self) -> bool:
        return self.financer_category in PUBLIC_CATEGORIES

    @property
    def missing(self) -> list[str]:
        """What a public buyer's Chorus Pro structure requires and is not filled in (French)."""
        if not self.is_public:
            return []
        missing = []
        # The State's structures always require an engagement (engagement juridique).
        needs_engagement = self.requires_engagement or self.financer_category == "state"
        if needs_engagement and not self.engagement_number:
            missing.append("numéro d'engagement")
        if self.requires_service_code and not self.service_code:
            missing.append("code service")
        return missing


_SELECT = """
SELECT pf.programme_id, pf.organisation_id, o.name AS organisation_name, o.financer_category,
       pf.engagement_number, pf.service_code, pf.payment_method, pf.requires_engagement,
       pf.requires_service_code
FROM programme_financer pf JOIN organisation o ON o.id = pf.organisation_id
"""


async def list_participations(session: AsyncSession, *, programme_id: int | None = None
                              ) -> list[Participation]:
    where = "WHERE pf.programme_id = :p" if programme_id is not None else ""
    rows = (await session.execute(text(f"{_SELECT} {where} ORDER BY pf.programme_id, "
                                       "pf.position"), {"p": programme_id})).all()
    return [Participation.model_validate(dict(r._mapping)) for r in rows]


async def update_participation(session: AsyncSession, *, programme_id: int,
                               organisation_id: int, data: ParticipationUpdate) -> Participation:
    """Change what was sent; a field sent empty is cleared."""
    changes: dict[str, Any] = {}
    for name in data.model_fields_set:
        value = getattr(data, name)
        if name in ("requires_engagement", "requires_service_code") and value is None:
            raise InvalidInput("Valeur attendue : vrai ou faux.", field=name)
        changes[name] = value if value != "" else None
    if changes:
        assignments = ", ".join(f"{k} = :{k}" for k in changes)
        updated = (await session.execute(text(
            f"UPDATE programme_financer SET {assignments} "
            "WHERE programme_id = :p AND organisation_id = :o RETURNING id"),
            {**changes, "p": programme_id, "o": organisation_id})).first()
    else:
        updated = (await session.execute(text(
            "SELECT id FROM programme_financer WHERE programme_id = :p AND organisation_id = :o"),
            {"p": programme_id, "o": organisation_id})).first()
    if updated is None:
        raise NotFound("Ce financeur ne participe pas à ce programme.",
                       programme_id=programme_id, organisation_id=organisation_id)
    rows = (await session.execute(text(
        f"{_SELECT} WHERE pf.programme_id = :p AND pf.organisation_id = :o"),
        {"p": programme_id, "o": organisation_id})).first()
    return Participation.model_validate(dict(rows._mapping))  # type: ignore[union-attr]
