"""The commune reference: loaded from the shipped dataset, found by name or postcode."""

from __future__ import annotations

import pytest

from pass_ import communes


async def test_the_reference_holds_every_current_commune_with_its_postcodes(session) -> None:
    assert await communes.count(session) > 34_000
    rennes = await communes.get_commune(session, "35238")
    assert rennes is not None
    assert (rennes.name, rennes.departement) == ("Rennes", "35")
    assert "35000" in rennes.postcodes
    assert rennes.latitude == pytest.approx(48.11, abs=0.05)  # shipped centre of the demo
    ajaccio = await communes.get_commune(session, "2a004")
    assert ajaccio is not None and ajaccio.name == "Ajaccio"


async def test_a_postcode_finds_every_commune_it_serves(session) -> None:
    found = await communes.search(session, "35690")
    assert [c.name for c in found] == ["Acigné"]
    paris = await communes.search(session, "75011")
    assert [c.code for c in paris] == ["75056"]


async def test_a_name_is_found_whatever_its_accents_case_and_hyphens(session) -> None:
    assert (await communes.search(session, "acigne"))[0].code == "35001"
    assert (await communes.search(session, "st malo"))[0].name == "Saint-Malo"
    assert (await communes.search(session, "RENNES"))[0].code == "35238"
    assert await communes.search(session, "x") == []
    assert await communes.search(session, "zzzz%") == []


async def test_loading_again_changes_nothing_and_keeps_known_centres(session) -> None:
    before = await communes.count(session)
    rows = [r for r in communes.read_reference(centres=()) if r.departement == "35"]
    assert all(r.latitude is None for r in rows)
    await communes.load_communes(session, rows)
    assert await communes.count(session) == before
    rennes = await communes.get_commune(session, "35238")
    assert rennes is not None and rennes.latitude is not None


async def test_names_map_codes_and_leave_unknown_ones_out(session) -> None:
    assert await communes.names(session, ["35238", "35001", "99999", None]) == {
        "35238": "Rennes",
        "35001": "Acigné",
    }


def test_search_keys_and_distances() -> None:
    assert communes.search_key("Saint-Jacques-de-la-Lande") == "saint jacques de la lande"
    assert communes.search_key("L'Haÿ-les-Roses") == "l hay les roses"
    assert communes.search_key("Ste Anne") == "sainte anne"
    # Rennes → Paris: about 308 km as the crow flies.
    assert communes.distance_km(48.1113, -1.68, 48.8566, 2.3522) == pytest.approx(308, abs=5)


async def test_a_form_resolves_a_picked_typed_or_ambiguous_commune(session) -> None:
    from kit.errors import InvalidInput

    assert await communes.resolve(session, "Acigné (35) · 35001", field="c") == "35001"
    assert await communes.resolve(session, "35690", field="c") == "35001"
    assert await communes.resolve(session, "rennes", field="c") == "35238"
    assert await communes.resolve(session, "", field="c") is None
    with pytest.raises(InvalidInput) as homonyms:
        await communes.resolve(session, "Saint-Denis", field="c")
    assert homonyms.value.code == "ambiguous_commune"
    assert "Saint-Denis (93)" in homonyms.value.message
    assert "Saint-Denis (974)" in homonyms.value.message
    with pytest.raises(InvalidInput) as unknown:
        await communes.resolve(session, "Qwxzville", field="c")
    assert unknown.value.code == "unknown_commune"
