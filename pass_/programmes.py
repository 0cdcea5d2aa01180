"""Programmes: creation with every rule of DESIGN.md §5 checked, the issuing capacity, who may
see a programme, its live figures, and the idempotent demo programme.

Creating a programme posts each financer's commitment to the ledger
(`financer:<organisation id>:commitment` → `programme:<id>:available`, key
`commit:<programme id>:<organisation id>`), so the journal alone says what was committed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Boolean, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from kit.clock import end_of_january_next, end_of_year, paris_today
from kit.errors import Forbidden, InvalidInput, NotFound
from kit.money import BP
from ledger import service as ledger
from pass_.enums import FinancerRole, OrganisationKind, Role
from pass_.models import Organisation, Programme, ProgrammeFinancer, ProgrammeIssuer
from pass_.schemas import (
    FinancerIn,
    IssuerIn,
    ProgrammeCreate,
    ProgrammeDetail,
    ProgrammeFigures,
    ProgrammeFinancerRead,
    ProgrammeIssuerRead,
    ProgrammeRead,
)
from pass_.validation import validate_territory_code

MAX_STATE_SHARE_BP = 5000
MAX_BOOKLET_SIZE = 50
# Tokens carry the value in 32 bits and the last redemption day in 16 bits (pass_.tokens).
MAX_FACE_VALUE_CENTS = 100_000
LAST_REDEEM_DAY = date(2100, 12, 31)
MAX_COMMITMENT_CENTS = 10**13  # 100 billion euros: beyond, a typing mistake
MAX_WEIGHT = 1_000_000
MAX_QUOTA_CHEQUES = 100_000_000


@dataclass(frozen=True)
class Actor:
    """Who is acting: the user, their organisation and role (built by the API or the CLI)."""

    user_id: int | None
    organisation_id: int
    role: Role

    @classmethod
    def of(cls, principal: Any) -> Actor:
        """From anything with `user_id`, `organisation_id` and `role` (the API's principal)."""
        return cls(principal.user_id, principal.organisation_id, Role(principal.role))


class ProgrammeRuleBroken(InvalidInput):
    """A programme declaration that breaks one of the scheme's rules (each has its code)."""

    code = "invalid_programme"
    message = "Ce programme ne respecte pas les règles du dispositif."


def _broken(code: str, message: str, **details: object) -> ProgrammeRuleBroken:
    return ProgrammeRuleBroken(message, code=code, **details)


# --------------------------------------------------------------------------- capacity


def issuing_capacity(
    *, state_commitment_cents: int, other_commitments_cents: int, state_share_bp: int
) -> int:
    """The most value a programme may have on active + redeemed cheques (DESIGN.md §5).

    With S the state's commitment, N the other financers' and s the state share:
    capacity = min(S + N, S ÷ s, N ÷ (1 − s)), each quotient floored to the cent, computed in
    integers as S × 10000 // s_bp and N × 10000 // (10000 − s_bp). Why: the state pays the
    share s of every cheque and the others the rest (§6), so issuing V needs S ≥ s·V and
    N ≥ (1 − s)·V. With s = 0 the state pays nothing and its term drops out (it would divide by
    zero); s ≤ 50 % keeps the other divisor positive.
    """
    if state_commitment_cents < 0 or other_commitments_cents < 0:
        raise ValueError("commitments are non-negative cents")
    if not 0 <= state_share_bp <= MAX_STATE_SHARE_BP:
        raise ValueError("state share must be within 0..5000 bp")
    total = state_commitment_cents + other_commitments_cents
    terms = [total, other_commitments_cents * BP // (BP - state_share_bp)]
    if state_share_bp > 0:
        terms.append(state_commitment_cents * BP // state_share_bp)
    return min(terms)


def capacity_of(financers: Sequence[FinancerIn], state_share_bp: int) -> int:
    state = sum(f.commitment_cents for f in financers if f.role == FinancerRole.state)
    others = sum(f.commitment_cents for f in financers if f.role != FinancerRole.state)
    return issuing_capacity(
        state_commitment_cents=state,
        other_commitments_cents=others,
        state_share_bp=state_share_bp,
    )


# --------------------------------------------------------------------------- creation


@dataclass(frozen=True)
class _Dates:
    valid_from: date
    valid_until: date
    redeem_until: date


def _check_dates(data: ProgrammeCreate, today: date) -> _Dates:
    valid_from = data.valid_from or today
    valid_until = data.valid_until or end_of_year(valid_from)
    redeem_until = data.redeem_until or end_of_january_next(valid_until)
    if valid_from > valid_until:
        raise _broken(
            "invalid_dates",
            "La date de début de validité doit précéder la date de fin de validité.",
            field="valid_until",
        )
    if valid_until > redeem_until:
        raise _broken(
            "invalid_dates",
            "La date limite d'encaissement ne peut pas précéder la fin de validité des chèques.",
            field="redeem_until",
        )
    if valid_until < today:
        raise _broken(
            "invalid_dates",
            "La fin de validité est déjà passée : aucun carnet ne pourrait être distribué.",
            field="valid_until",
        )
    if redeem_until > LAST_REDEEM_DAY or valid_from.year < 2000:
        raise _broken(
            "invalid_dates",
            "Les dates du programme doivent être comprises entre 2000 et 2100.",
            field="redeem_until",
        )
    return _Dates(valid_from, valid_until, redeem_until)


def _check_amounts(data: ProgrammeCreate) -> None:
    if not 0 < data.face_value_cents <= MAX_FACE_VALUE_CENTS:
        raise _broken(
            "invalid_face_value",
            "La valeur faciale d'un chèque doit être comprise entre 0,01 € et 1 000 €.",
            field="face_value_cents",
        )
    sizes = data.booklet_sizes
    if not sizes or any(not 1 <= n <= MAX_BOOKLET_SIZE for n in sizes):
        raise _broken(
            "invalid_booklet_sizes",
            f"Indiquez au moins une taille de carnet, chacune de 1 à {MAX_BOOKLET_SIZE} chèques.",
            field="booklet_sizes",
        )
    if len(set(sizes)) != len(sizes):
        raise _broken(
            "invalid_booklet_sizes",
            "Chaque taille de carnet ne doit figurer qu'une fois.",
            field="booklet_sizes",
        )
    if not 0 <= data.state_share_bp <= MAX_STATE_SHARE_BP:
        raise _broken(
            "invalid_state_share",
            "La part de l'État doit être comprise entre 0 et 50 % (0 à 5000 points de base).",
            field="state_share_bp",
        )
    for field in ("financer_fee_bp", "site_commission_bp"):
        if not 0 <= getattr(data, field) <= BP:
            raise _broken(
                "invalid_fee",
                "Les frais et commissions sont compris entre 0 et 100 % "
                "(0 à 10000 points de base).",
                field=field,
            )


def _check_territory(codes: Sequence[str]) -> list[str]:
    if not codes:
        raise _broken(
            "invalid_territory",
            "Le territoire doit comporter au moins un département ou une commune.",
            field="territory",
        )
    territory: list[str] = []
    for raw in codes:
        try:
            code = validate_territory_code(raw)
        except InvalidInput:
            raise _broken(
                "invalid_territory",
                f"Le code « {str(raw)[:10]} » n'est ni un département (35, 2A, 971) ni une "
                "commune INSEE (35238).",
                field="territory",
            ) from None
        if code not in territory:
            territory.append(code)
    return territory


def _check_financers(financers: Sequence[FinancerIn], state_share_bp: int) -> None:
    if not financers:
        raise _broken(
            "financer_required", "Un programme a au moins un financeur.", field="financers"
        )
    ids = [f.organisation_id for f in financers]
    if len(set(ids)) != len(ids):
        raise _broken(
            "duplicate_financer",
            "Un même financeur ne peut figurer qu'une fois dans un programme.",
            field="financers",
        )
    states = [f for f in financers if f.role == FinancerRole.state]
    if len(states) > 1:
        raise _broken(
            "several_state_financers",
            "Un programme a au plus un financeur « État ».",
            field="financers",
        )
    if state_share_bp > 0 and not states:
        raise _broken(
            "state_financer_required",
            "Une part de l'État est indiquée mais aucun financeur n'a le rôle « État ».",
            field="financers",
        )
    if not any(f.role != FinancerRole.state for f in financers):
        raise _broken(
            "local_financer_required",
            "L'État finance au plus la moitié : il faut au moins un autre financeur "
            "(collectivité ou organisme).",
            field="financers",
        )
    for i, f in enumerate(financers):
        if not 0 <= f.commitment_cents <= MAX_COMMITMENT_CENTS:
            raise _broken(
                "invalid_commitment",
                "L'engagement d'un financeur est un montant positif en centimes.",
                field=f"financers.{i}.commitment_cents",
            )
        if not 1 <= f.weight <= MAX_WEIGHT:
            raise _broken(
                "invalid_weight",
                "Le poids d'un financeur est un nombre entier au moins égal à 1.",
                field=f"financers.{i}.weight",
            )
        if f.demarche_families and f.role != FinancerRole.operator:
            raise _broken(
                "families_for_operators_only",
                "Seuls les organismes qui dématérialisent leurs démarches (rôle « operator ») "
                "déclarent des familles de démarches.",
                field=f"financers.{i}.demarche_families",
            )
        if len(set(f.demarche_families)) != len(f.demarche_families):
            raise _broken(
                "invalid_demarche_families",
                "Chaque famille de démarches ne doit figurer qu'une fois par financeur.",
                field=f"financers.{i}.demarche_families",
            )


def _check_issuers(issuers: Sequence[IssuerIn]) -> None:
    if not issuers:
        raise _broken(
            "issuer_required",
            "Un programme a au moins une structure prescriptrice.",
            field="issuers",
        )
    ids = [i.organisation_id for i in issuers]
    if len(set(ids)) != len(ids):
        raise _broken(
            "duplicate_issuer",
            "Une même structure prescriptrice ne peut figurer qu'une fois dans un programme.",
            field="issuers",
        )
    for n, issuer in enumerate(issuers):
        if not 0 <= issuer.quota_cheques <= MAX_QUOTA_CHEQUES:
            raise _broken(
                "invalid_quota",
                "Le quota d'une structure prescriptrice est un nombre de chèques positif.",
                field=f"issuers.{n}.quota_cheques",
            )


async def _check_organisations(
    session: AsyncSession, ids: Sequence[int], kind: OrganisationKind, what: str
) -> dict[int, Organisation]:
    found = {
        o.id: o
        for o in (
            await session.scalars(select(Organisation).where(col(Organisation.id).in_(ids)))
        ).all()
    }
    for organisation_id in ids:
        org = found.get(organisation_id)
        if org is None or org.kind != kind.value:
            raise _broken(
                f"invalid_{what}",
                f"L'organisation {organisation_id} n'existe pas ou n'est pas "
                + ("un financeur." if what == "financer" else "une structure prescriptrice."),
                organisation_id=organisation_id,
            )
    return found  # type: ignore[return-value]


async def create_programme(
    session: AsyncSession, data: ProgrammeCreate, *, today: date
) -> Programme:
    """Check every rule, store the programme with its financers and issuers, and post the
    commitments to the ledger. Raises ProgrammeRuleBroken (422) naming the broken rule."""
    dates = _check_dates(data, today)
    _check_amounts(data)
    territory = _check_territory(data.territory)
    _check_financers(data.financers, data.state_share_bp)
    _check_issuers(data.issuers)
    capacity = capacity_of(data.financers, data.state_share_bp)
    smallest = data.face_value_cents * min(data.booklet_sizes)
    if capacity < smallest:
        raise _broken(
            "insufficient_commitments",
            "Les engagements des financeurs ne permettent pas d'émettre un seul carnet : "
            "vérifiez les montants et la part de l'État.",
            issuing_capacity_cents=capacity,
        )
    await _check_organisations(
        session, [f.organisation_id for f in data.financers], OrganisationKind.financer, "financer"
    )
    await _check_organisations(
        session, [i.organisation_id for i in data.issuers], OrganisationKind.issuer, "issuer"
    )
    programme = Programme(
        name=" ".join(data.name.split()),
        territory=territory,
        face_value_cents=data.face_value_cents,
        booklet_sizes=sorted(data.booklet_sizes),
        valid_from=dates.valid_from,
        valid_until=dates.valid_until,
        redeem_until=dates.redeem_until,
        state_share_bp=data.state_share_bp,
        financer_fee_bp=data.financer_fee_bp,
        site_commission_bp=data.site_commission_bp,
        issuing_capacity_cents=capacity,
        issued_value_cents=0,
    )
    session.add(programme)
    await session.flush()
    for position, f in enumerate(data.financers):
        session.add(
            ProgrammeFinancer(
                programme_id=programme.id,  # type: ignore[arg-type]
                organisation_id=f.organisation_id,
                position=position,
                role=f.role.value,
                commitment_cents=f.commitment_cents,
                weight=f.weight,
                demarche_families=[d.value for d in f.demarche_families],
            )
        )
    for issuer in data.issuers:
        session.add(
            ProgrammeIssuer(
                programme_id=programme.id,  # type: ignore[arg-type]
                organisation_id=issuer.organisation_id,
                quota_cheques=issuer.quota_cheques,
            )
        )
    await session.flush()
    for f in data.financers:
        if f.commitment_cents == 0:
            continue  # a ledger entry moves a non-zero amount
        await ledger.post(
            session,
            key=f"commit:{programme.id}:{f.organisation_id}",
            kind="commitment",
            postings=[
                (f"financer:{f.organisation_id}:commitment", -f.commitment_cents),
                (f"programme:{programme.id}:available", f.commitment_cents),
            ],
            memo={"programme_id": programme.id, "financer_id": f.organisation_id},
        )
    return programme


# --------------------------------------------------------------------------- reading


async def get_programme(session: AsyncSession, programme_id: int) -> Programme:
    # populate_existing: the capacity columns move by SQL UPDATEs the identity map cannot see.
    programme = await session.scalar(
        select(Programme)
        .where(col(Programme.id) == programme_id)
        .execution_options(populate_existing=True)
    )
    if programme is None:
        raise NotFound("Programme introuvable.", programme_id=programme_id)
    return programme


# Which of these communes lie in the territory: the rule is the database's
# (`pass_in_territory`, pass_/redeem.sql), the very one the redemption judges a site by.
_IN_TERRITORY = text("""
SELECT x.code FROM unnest(CAST(:communes AS text[])) AS x(code)
WHERE pass_in_territory(x.code, CAST(:territory AS text[]))
""")


async def communes_in_territory(
    session: AsyncSession, communes: Sequence[str], territory: Sequence[str]
) -> set[str]:
    """The communes (INSEE codes) of `communes` that lie in `territory` (département or
    commune codes): where a programme's cheques are accepted."""
    if not communes:
        return set()
    rows = await session.execute(_IN_TERRITORY, {"communes": list(communes),
                                                 "territory": list(territory)})
    return {row[0] for row in rows}


async def _is_party(session: AsyncSession, programme: Programme, viewer: Actor) -> bool:
    """Whether `viewer` takes part in the programme (and so may read it)."""
    if viewer.role == Role.operator_admin:
        return True
    if viewer.role == Role.issuer_agent:
        table = ProgrammeIssuer
    elif viewer.role == Role.financer:
        table = ProgrammeFinancer  # type: ignore[assignment]
    else:
        org = await session.get(Organisation, viewer.organisation_id)
        return org is not None and bool(
            await communes_in_territory(session, [org.commune_insee], programme.territory))
    found = await session.scalar(
        select(col(table.id)).where(
            col(table.programme_id) == programme.id,
            col(table.organisation_id) == viewer.organisation_id,
        )
    )
    return found is not None


async def visible_programme(session: AsyncSession, programme_id: int, viewer: Actor) -> Programme:
    """The programme if `viewer` takes part in it; NotFound otherwise, so ids cannot be probed."""
    programme = await get_programme(session, programme_id)
    if not await _is_party(session, programme, viewer):
        raise NotFound("Programme introuvable.", programme_id=programme_id)
    return programme


async def list_programmes(session: AsyncSession, viewer: Actor) -> list[Programme]:
    """The programmes `viewer` takes part in: all for the operator, their own for issuers and
    financers, those whose territory holds their commune for sites."""
    stmt = select(Programme).order_by(col(Programme.valid_from).desc(), col(Programme.id).desc())
    if viewer.role == Role.issuer_agent:
        stmt = stmt.where(
            col(Programme.id).in_(
                select(col(ProgrammeIssuer.programme_id)).where(
                    col(ProgrammeIssuer.organisation_id) == viewer.organisation_id
                )
            )
        )
    elif viewer.role == Role.financer:
        stmt = stmt.where(
            col(Programme.id).in_(
                select(col(ProgrammeFinancer.programme_id)).where(
                    col(ProgrammeFinancer.organisation_id) == viewer.organisation_id
                )
            )
        )
    elif viewer.role == Role.site_mediator:
        org = await session.get(Organisation, viewer.organisation_id)
        if org is None:
            return []
        stmt = stmt.where(func.pass_in_territory(org.commune_insee, col(Programme.territory),
                                                 type_=Boolean))
    return list((await session.scalars(stmt.execution_options(populate_existing=True))).all())


_FIGURES = text("""
SELECT
  coalesce(sum(value_cents) FILTER (WHERE status = 'active'), 0),
  coalesce(sum(value_cents) FILTER (WHERE status = 'redeemed'), 0),
  coalesce(sum(value_cents) FILTER (WHERE status = 'expired'), 0),
  coalesce(sum(value_cents) FILTER (WHERE status = 'cancelled' AND activated_at IS NOT NULL), 0),
  count(*) FILTER (WHERE status = 'in_stock')
FROM cheque WHERE programme_id = :programme_id
""")


async def programme_figures(session: AsyncSession, programme: Programme) -> ProgrammeFigures:
    """Value of the programme's cheques by state (cancelled counts only cheques that were
    active: in-stock cheques never carried value) and the capacity left."""
    row = (await session.execute(_FIGURES, {"programme_id": programme.id})).one()
    active, redeemed, expired, cancelled, in_stock = (int(v) for v in row)
    return ProgrammeFigures(
        issuing_capacity_cents=programme.issuing_capacity_cents,
        issued_value_cents=programme.issued_value_cents,
        remaining_capacity_cents=programme.issuing_capacity_cents - programme.issued_value_cents,
        active_cents=active,
        redeemed_cents=redeemed,
        expired_cents=expired,
        cancelled_cents=cancelled,
        in_stock_cheques=in_stock,
    )


async def programme_detail(
    session: AsyncSession, programme: Programme, *, figures: ProgrammeFigures | None = None
) -> ProgrammeDetail:
    """The programme with its financers, issuers (quota used) and live figures (or the
    `figures` given: pages at scale pass the rollup's, `reporting.programme_figures`)."""
    financers = (
        await session.execute(
            select(ProgrammeFinancer, col(Organisation.name))
            .join(Organisation, col(Organisation.id) == col(ProgrammeFinancer.organisation_id))
            .where(col(ProgrammeFinancer.programme_id) == programme.id)
            .order_by(col(ProgrammeFinancer.position))
        )
    ).all()
    issuers = (
        await session.execute(
            select(ProgrammeIssuer, col(Organisation.name))
            .join(Organisation, col(Organisation.id) == col(ProgrammeIssuer.organisation_id))
            .where(col(ProgrammeIssuer.programme_id) == programme.id)
            .order_by(col(Organisation.name))
            .execution_options(populate_existing=True)
        )
    ).all()
    base = ProgrammeRead.model_validate(programme).model_dump()
    return ProgrammeDetail(
        **base,
        financers=[
            ProgrammeFinancerRead(
                organisation_id=f.organisation_id,
                name=name,
                position=f.position,
                role=FinancerRole(f.role),
                commitment_cents=f.commitment_cents,
                weight=f.weight,
                demarche_families=list(f.demarche_families),
            )
            for f, name in financers
        ],
        issuers=[
            ProgrammeIssuerRead(
                organisation_id=i.organisation_id,
                name=name,
                quota_cheques=i.quota_cheques,
                issued_cheques=i.issued_cheques,
                remaining_cheques=i.quota_cheques - i.issued_cheques,
            )
            for i, name in issuers
        ],
        figures=figures if figures is not None else await programme_figures(session, programme),
    )


def require_role(actor: Actor, *roles: Role) -> None:
    if actor.role not in roles:
        raise Forbidden("Votre rôle ne permet pas cette action.", role=actor.role.value)


# --------------------------------------------------------------------------- demo


DEMO_PROGRAMME_NAME = "Pass numérique AdmiVille 2026"


async def ensure_demo_programme(
    session: AsyncSession, orgs: Mapping[str, Organisation], *, today: date | None = None
) -> Programme:
    """The demo programme of AdmiVille (idempotent: found by name, else created).

    Territory Ille-et-Vilaine (35), 10 € cheques in booklets of 5 or 10, valid for the current
    year (Europe/Paris) and redeemable until 31 January of the next; the État finances 50 %.
    """
    existing = await session.scalar(
        select(Programme)
        .where(col(Programme.name) == DEMO_PROGRAMME_NAME)
        .order_by(col(Programme.id))
    )
    if existing is not None:
        return existing
    today = today or paris_today()
    year_start = date(today.year, 1, 1)
    data = ProgrammeCreate(
        name=DEMO_PROGRAMME_NAME,
        territory=["35"],
        face_value_cents=1000,
        booklet_sizes=[5, 10],
        valid_from=year_start,
        valid_until=end_of_year(year_start),
        redeem_until=end_of_january_next(year_start),
        state_share_bp=5000,
        financers=[
            FinancerIn(
                organisation_id=orgs["etat"].id,  # type: ignore[arg-type]
                role=FinancerRole.state,
                commitment_cents=5_000_000,
            ),
            FinancerIn(
                organisation_id=orgs["departement"].id,  # type: ignore[arg-type]
                role=FinancerRole.local,
                commitment_cents=3_000_000,
                weight=1,
            ),
            FinancerIn(
                organisation_id=orgs["caf"].id,  # type: ignore[arg-type]
                role=FinancerRole.operator,
                commitment_cents=2_000_000,
                weight=1,
                demarche_families=["caf"],  # type: ignore[list-item]
            ),
        ],
        issuers=[IssuerIn(organisation_id=orgs["ccas"].id, quota_cheques=2000)],  # type: ignore[arg-type]
    )
    return await create_programme(session, data, today=today)
