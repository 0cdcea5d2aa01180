"""Server-side SVG charts: readable values, an accessible name, escaped labels."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from api.web.charts import Row, bar_chart
from api.web.templating import eur_short

SVG = "{http://www.w3.org/2000/svg}"


def test_bars_are_proportional_and_carry_their_value_as_text() -> None:
    svg = bar_chart(
        "Encaissé", [Row("CAF", [3000]), Row("Impôts <DGFiP>", [1000])], ["€"], eur_short
    )
    root = ET.fromstring(str(svg))
    assert root.get("role") == "img" and root.get("aria-labelledby")
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert texts == ["CAF", "30\u00a0€", "Impôts <DGFiP>", "10\u00a0€"]
    widths = [int(r.get("width")) for r in root.iter(f"{SVG}rect")]  # type: ignore[arg-type]
    assert widths[1] == round(widths[0] / 3)  # rounded to the pixel
    desc = root.find(f"{SVG}desc")
    assert desc is not None and desc.text == "CAF : 30\u00a0€; Impôts <DGFiP> : 10\u00a0€"


def test_two_series_and_zero_values_are_drawn() -> None:
    svg = bar_chart(
        "Remis et encaissés", [Row("Niveau 1", [5000, 0])], ["remis", "encaissés"], eur_short
    )
    root = ET.fromstring(str(svg))
    assert [r.get("width") for r in root.iter(f"{SVG}rect")][1] == "0"
    assert "remis 50\u00a0€, encaissés 0\u00a0€" in (root.find(f"{SVG}desc").text or "")  # type: ignore[union-attr]


def test_an_empty_chart_says_so() -> None:
    assert "Aucune donnée" in str(bar_chart("Vide", [], ["x"]))
