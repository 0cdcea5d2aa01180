"""The pollueur-payeur allocation (DESIGN.md §6): exact to the cent, in order, deterministic."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearing.allocation import Allocation, Allocator, FinancerShare, allocate_many

FAMILIES = ["caf", "assurance_maladie", "impots", "ants"]


# -- an independent, deliberately naive reading of §6, to compare the memoised allocator with --

def _lr(total: int, weights: list[int]) -> list[int]:
    """Largest remainder with exact fractions; ties to the first declared."""
    wsum = sum(weights)
    quotas = [Fraction(total * w, wsum) for w in weights]
    parts = [int(q) for q in quotas]
    order = sorted(range(len(weights)), key=lambda i: (-(quotas[i] - parts[i]), i))
    for i in order[: total - sum(parts)]:
        parts[i] += 1
    return parts


def _reference(bp: int, fins: list[FinancerShare], remaining: dict, value: int,
               family: str | None) -> tuple[dict, dict]:
    parts = {f.financer_id: 0 for f in fins}
    over = {f.financer_id: 0 for f in fins}
    state = [f for f in fins if f.role == "state"]
    nonstate = [f for f in fins if f.role != "state"]
    s = 0
    if state:
        s = min(value * bp // 10000, remaining[state[0].financer_id])
        parts[state[0].financer_id] = s
    rest = value - s
    ops = [f for f in nonstate if f.role == "operator" and family in f.demarche_families]
    payers = ops if family is not None and any(remaining[f.financer_id] > 0 for f in ops) \
        else nonstate

    def room(f: FinancerShare) -> int:
        return remaining[f.financer_id] - parts[f.financer_id]

    excess = 0
    for f, share in zip(payers, _lr(rest, [f.weight for f in payers]), strict=True):
        take = min(share, room(f))
        parts[f.financer_id] += take
        excess += share - take
    for group in (payers, nonstate):
        while excess and any(room(f) > 0 for f in group):
            live = [f for f in group if room(f) > 0]
            shares = _lr(excess, [f.weight for f in live])
            excess = 0
            for f, share in zip(live, shares, strict=True):
                take = min(share, room(f))
                parts[f.financer_id] += take
                excess += share - take
    if excess:
        for f, share in zip(nonstate, _lr(excess, [f.weight for f in nonstate]), strict=True):
            parts[f.financer_id] += share
            over[f.financer_id] += share
    for fid in parts:
        remaining[fid] -= parts[fid] - over[fid]
    return ({k: v for k, v in parts.items() if v}, {k: v for k, v in over.items() if v})


# -- strategies -----------------------------------------------------------------------------

@st.composite
def programmes(draw: st.DrawFn) -> tuple[int, list[FinancerShare], dict[str, int]]:
    fins: list[FinancerShare] = []
    has_state = draw(st.booleans())
    n_local = draw(st.integers(0, 3))
    n_operator = draw(st.integers(0 if n_local else 1, 3))
    if has_state:
        fins.append(FinancerShare("etat", "state", draw(st.integers(1, 5))))
    for k in range(n_local):
        fins.append(FinancerShare(f"local{k}", "local", draw(st.integers(1, 7))))
    for k in range(n_operator):
        families = frozenset(draw(st.lists(st.sampled_from(FAMILIES[:3]), max_size=2)))
        fins.append(FinancerShare(f"op{k}", "operator", draw(st.integers(1, 7)), families))
    fins = draw(st.permutations(fins))  # the declared order matters; let it vary
    bp = draw(st.integers(0, 5000)) if has_state else 0
    remaining = {f.financer_id: draw(st.integers(0, 20_000)) for f in fins}
    return bp, list(fins), remaining


redemptions = st.lists(
    st.tuples(st.sampled_from([1000, 1003, 500, 1, 0, 999, 2000]),
              st.sampled_from([None, *FAMILIES])),
    min_size=1, max_size=60)


# -- properties -----------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(programmes(), redemptions)
def test_each_redemption_is_split_exactly_as_the_rule_reads(programme, items):
    bp, fins, remaining = programme
    allocator = Allocator(state_share_bp=bp, financers=fins, remaining_cents=remaining)
    mirror = dict(remaining)
    overrun = {f.financer_id: 0 for f in fins}
    for value, family in items:
        got = allocator.allocate(value, family)
        parts, over = _reference(bp, fins, mirror, value, family)
        assert dict(got.parts) == parts
        assert dict(got.overrun) == over
        for fid, cents in over.items():
            overrun[fid] += cents
    assert allocator.remaining_cents() == mirror
    assert allocator.overrun_cents() == overrun


@settings(max_examples=300, deadline=None)
@given(programmes(), redemptions)
def test_parts_sum_to_the_value_and_respect_the_state_cap_and_commitments(programme, items):
    bp, fins, remaining = programme
    allocator = Allocator(state_share_bp=bp, financers=fins, remaining_cents=remaining)
    state_ids = {f.financer_id for f in fins if f.role == "state"}
    for value, family in items:
        before = allocator.remaining_cents()
        nonstate_left = sum(c for fid, c in before.items() if fid not in state_ids)
        result = allocator.allocate(value, family)
        assert sum(result.parts.values()) == value == result.total_cents
        assert all(c > 0 for c in result.parts.values())
        for fid in state_ids:
            assert result.parts.get(fid, 0) <= value * bp // 10000
            assert result.parts.get(fid, 0) <= before[fid]
            assert fid not in result.overrun
        state_part = sum(result.parts.get(fid, 0) for fid in state_ids)
        if nonstate_left >= value - state_part:
            # Enough commitment left: nobody goes beyond it.
            assert result.overrun_cents == 0
            assert all(c <= before[fid] for fid, c in result.parts.items())
        else:
            assert result.overrun_cents == value - state_part - nonstate_left
        assert all(c >= 0 for c in allocator.remaining_cents().values())
    total = sum(v for v, _ in items)
    assert sum(allocator.allocated_cents().values()) == total
    for fid, charged in allocator.allocated_cents().items():
        assert charged - allocator.overrun_cents()[fid] <= remaining[fid]


@settings(max_examples=150, deadline=None)
@given(programmes(), redemptions)
def test_the_same_input_gives_the_same_output(programme, items):
    bp, fins, remaining = programme
    first = allocate_many(Allocator(state_share_bp=bp, financers=fins,
                                    remaining_cents=remaining), items)
    second = allocate_many(Allocator(state_share_bp=bp, financers=fins,
                                     remaining_cents=remaining), items)
    assert [(dict(a.parts), dict(a.overrun)) for a in first] == \
        [(dict(b.parts), dict(b.overrun)) for b in second]


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 5000), st.integers(0, 5000), st.integers(1, 9), st.integers(1, 9),
       st.integers(0, 30_000))
def test_a_demarche_family_is_charged_to_its_operators_until_their_commitment_runs_out(
        value, bp, w_local, w_caf, caf_commitment):
    fins = [FinancerShare("etat", "state", 1),
            FinancerShare("dept", "local", w_local),
            FinancerShare("caf", "operator", w_caf, frozenset({"caf"})),
            FinancerShare("cpam", "operator", 1, frozenset({"assurance_maladie"}))]
    big = 10**12
    allocator = Allocator(state_share_bp=bp, financers=fins, remaining_cents={
        "etat": big, "dept": big, "caf": caf_commitment, "cpam": big})
    rest = value - value * bp // 10000
    seen_fallback = False
    for _ in range(40):
        caf_left = allocator.remaining_cents()["caf"]
        result = allocator.allocate(value, "caf")
        if caf_left >= rest:
            # The CAF alone pays the rest, nobody else but the state.
            assert result.parts.get("caf", 0) == rest
            assert set(result.parts) <= {"etat", "caf"}
        elif caf_left > 0:
            # It pays what it has left; the excess falls on the other non-state financers.
            assert result.parts["caf"] == caf_left
            assert allocator.remaining_cents()["caf"] == 0
        else:
            # Exhausted: the family falls back to every non-state financer, CAF capped at 0.
            seen_fallback = True
            assert "caf" not in result.parts
            assert result.parts.get("dept", 0) + result.parts.get("cpam", 0) == rest
    # The CAF runs out at redemption ceil(commitment / rest); the fallback follows it.
    assert seen_fallback == (caf_commitment <= 39 * rest)


# -- a worked scenario, by hand ------------------------------------------------------------

def test_worked_scenario_face_value_1003_half_state_locals_one_to_two_and_a_caf():
    # Declared order: État (state), Région (local, weight 1), Département (local, weight 2),
    # CAF (operator, weight 1, family caf). State share 50 %. Face value 1 003 cents.
    # Commitments: État 2 800, CAF 1 000, the locals plenty (100 000 each).
    fins = [FinancerShare("etat", "state", 1),
            FinancerShare("region", "local", 1),
            FinancerShare("dept", "local", 2),
            FinancerShare("caf", "operator", 1, frozenset({"caf"}))]
    allocator = Allocator(state_share_bp=5000, financers=fins, remaining_cents={
        "etat": 2_800, "region": 100_000, "dept": 100_000, "caf": 1_000})
    # In every redemption until the state runs out: state = floor(1003 × 5000 / 10000)
    # = floor(501.5) = 501, rest = 1003 − 501 = 502.
    results = allocate_many(allocator, [
        (1003, None), (1003, "caf"), (1003, "impots"), (1003, "caf"),
        (1003, "caf"), (1003, None), (1003, "caf")])

    # R1, no family → P = Région, Département, CAF (weights 1:2:1, W = 4).
    #   502 × 1/4 = 125.5 → 125 (rem. 2/4); 502 × 2/4 = 251 (rem. 0); 502 × 1/4 → 125 (rem. 2/4).
    #   One cent left: Région and CAF tie on 2/4, Région is declared first → 126.
    assert dict(results[0].parts) == {"etat": 501, "region": 126, "dept": 251, "caf": 125}
    # CAF left: 1000 − 125 = 875.

    # R2, caf, CAF has commitment left → P = {CAF}: it pays the whole rest, 502.
    assert dict(results[1].parts) == {"etat": 501, "caf": 502}
    # CAF left: 875 − 502 = 373.

    # R3, impots: no operator has that family → same split as R1.
    assert dict(results[2].parts) == {"etat": 501, "region": 126, "dept": 251, "caf": 125}
    # CAF left: 373 − 125 = 248.

    # R4, caf → P = {CAF}, its part 502 > 248: it pays 248, excess 502 − 248 = 254.
    #   No other payer in P → all non-state with commitment left: Région, Département (1:2).
    #   254 × 1/3 = 84.67 → 84 (rem. 2/3); 254 × 2/3 = 169.33 → 169 (rem. 1/3);
    #   one cent left → Région (largest remainder) → 85.   85 + 169 + 248 + 501 = 1003.
    assert dict(results[3].parts) == {"etat": 501, "region": 85, "dept": 169, "caf": 248}
    # CAF left: 0. The state has paid 4 × 501 = 2004, 796 left.

    # R5, caf, but the CAF is exhausted → P = every non-state financer (1:2:1), as in R1:
    #   Région 126, Département 251, CAF 125 → CAF capped at 0, excess 125 over the payers of
    #   P with commitment left, Région and Département (1:2): 41.67 → 41 (rem. 2/3),
    #   83.33 → 83 (rem. 1/3), one cent → Région 42.  Région 126 + 42 = 168,
    #   Département 251 + 83 = 334.  (Splitting 502 over the two locals directly would give
    #   167/335: the rule splits over P first, then re-splits the excess.)
    assert dict(results[4].parts) == {"etat": 501, "region": 168, "dept": 334}
    # The state has paid 5 × 501 = 2505, 295 left.

    # R6, no family: the state's 501 is capped at its remaining 295; rest = 1003 − 295 = 708.
    #   708 over 1:2:1 → 177, 354, 177 (exact); CAF capped at 0, excess 177 over 1:2 →
    #   59, 118. Région 177 + 59 = 236, Département 354 + 118 = 472.  295 + 236 + 472 = 1003.
    assert dict(results[5].parts) == {"etat": 295, "region": 236, "dept": 472}

    # R7, caf: state exhausted → 0; CAF exhausted → P = every non-state; rest = 1003.
    #   1003 over 1:2:1: 250.75 → 250 (rem. 3/4), 501.5 → 501 (rem. 2/4), 250.75 → 250
    #   (rem. 3/4); two cents left → Région and CAF (3/4, declared order) → 251, 501, 251.
    #   CAF capped at 0: excess 251 over Région, Département (1:2): 83.67 → 83 (rem. 2/3),
    #   167.33 → 167 (rem. 1/3), one cent → Région 84.  Région 251 + 84 = 335,
    #   Département 501 + 167 = 668.  335 + 668 = 1003.
    assert dict(results[6].parts) == {"region": 335, "dept": 668}

    assert all(r.overrun_cents == 0 for r in results)
    # Totals: État 5 × 501 + 295 = 2800 (all its commitment); CAF 125 + 502 + 125 + 248 = 1000;
    # Région 126 + 126 + 85 + 168 + 236 + 335 = 1076; Département 251 + 251 + 169 + 334 + 472
    # + 668 = 2145.  2800 + 1000 + 1076 + 2145 = 7021 = 7 × 1003.
    assert allocator.allocated_cents() == {"etat": 2800, "region": 1076, "dept": 2145,
                                           "caf": 1000}
    assert allocator.remaining_cents() == {"etat": 0, "region": 100_000 - 1076,
                                           "dept": 100_000 - 2145, "caf": 0}


def test_when_every_commitment_is_exhausted_the_rest_is_an_overrun_on_non_state_financers():
    fins = [FinancerShare("etat", "state", 1),
            FinancerShare("region", "local", 1),
            FinancerShare("caf", "operator", 3, frozenset({"caf"}))]
    allocator = Allocator(state_share_bp=5000, financers=fins, remaining_cents={
        "etat": 300, "region": 100, "caf": 50})
    # State: min(floor(1000 × 0.5) = 500, 300) = 300; rest 700. caf → P = {CAF}: it pays 50,
    # excess 650 → Région pays its 100, 550 left and nobody has commitment: overrun, split
    # 1:3 over Région and CAF → 137.5 → 137 (rem. 2/4), 412.5 → 412 (rem. 2/4), tie → Région.
    result = allocator.allocate(1000, "caf")
    assert dict(result.parts) == {"etat": 300, "region": 100 + 138, "caf": 50 + 412}
    assert dict(result.overrun) == {"region": 138, "caf": 412}
    assert result.overrun_cents == 550
    assert allocator.remaining_cents() == {"etat": 0, "region": 0, "caf": 0}
    assert allocator.overrun_cents() == {"etat": 0, "region": 138, "caf": 412}
    assert allocator.allocated_cents() == {"etat": 300, "region": 238, "caf": 462}


def test_repeated_redemptions_share_one_result_until_a_commitment_runs_out():
    fins = [FinancerShare("etat", "state", 1), FinancerShare("region", "local", 1)]
    allocator = Allocator(state_share_bp=5000, financers=fins,
                          remaining_cents={"etat": 10_000, "region": 1_200})
    first, second, third = allocate_many(allocator, [(1000, None)] * 3)
    assert first is second  # the memoised result is reused while nothing runs out
    assert dict(second.parts) == {"etat": 500, "region": 500}
    assert dict(third.parts) == {"etat": 500, "region": 200 + 300}
    assert third.overrun_cents == 300


@pytest.mark.parametrize(("financers", "bp", "message"), [
    ([FinancerShare("e", "state", 1)], 5000, "non-state"),
    ([FinancerShare("e", "state", 1), FinancerShare("f", "state", 1),
      FinancerShare("l", "local", 1)], 5000, "one state"),
    ([FinancerShare("l", "local", 1)], 5000, "without a state"),
    ([FinancerShare("l", "local", 0)], 0, "positive"),
    ([FinancerShare("l", "local", 1), FinancerShare("l", "operator", 1)], 0, "twice"),
    ([FinancerShare("l", "banque", 1)], 0, "role"),
    ([FinancerShare("e", "state", 1), FinancerShare("l", "local", 1)], 10_001, "0..10000"),
])
def test_an_ill_formed_programme_is_refused(financers, bp, message):
    with pytest.raises(ValueError, match=message):
        Allocator(state_share_bp=bp, financers=financers, remaining_cents={})


def test_a_negative_value_or_commitment_is_refused():
    fins = [FinancerShare("l", "local", 1)]
    with pytest.raises(ValueError):
        Allocator(state_share_bp=0, financers=fins, remaining_cents={"l": -1})
    allocator = Allocator(state_share_bp=0, financers=fins, remaining_cents={"l": 10})
    with pytest.raises(ValueError):
        allocator.allocate(-5, None)
    assert allocator.allocate(0, None) == Allocation(parts={})
