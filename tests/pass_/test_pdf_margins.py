"""Issue 16, item 12: every printed mark of a booklet stays at least 5 mm from the sheet's
edges (office printers print nothing in the last 4–5 mm), measured in the real PDF: its
pages rasterised by poppler, and the words' boxes as poppler's text extraction reports them."""

from __future__ import annotations

import re
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from pass_ import pdf
from pass_.issuance import new_booklet_number
from pass_.tokens import Keyring
from tests.pass_.test_pdf import make_booklet, poppler  # noqa: F401  (fixture)

DPI = 150
MM = DPI / 25.4  # pixels a millimetre
EDGE_MM = 5.0


@pytest.fixture(scope="module")
def keyring(tmp_path_factory: pytest.TempPathFactory) -> Keyring:
    return Keyring.load_or_create(tmp_path_factory.mktemp("keys") / "keys")


def marks_near_the_edge(page: Image.Image) -> list[tuple[int, int]]:
    """Dark pixels closer than 5 mm to an edge (anti-aliasing of a mark exactly at 5 mm may
    grey the pixel that straddles it, so the band is the whole pixels below 5 mm)."""
    grey = page.convert("L")
    width, height = grey.size
    band = int(EDGE_MM * MM)  # pixels 0 … band-1 lie entirely within 5 mm of the edge
    px = grey.load()
    found = []
    for y in range(height):
        inside = band <= y < height - band
        xs = range(width) if not inside else [*range(band), *range(width - band, width)]
        for x in xs:
            if px[x, y] < 200:
                found.append((x, y))
                if len(found) > 20:
                    return found
    return found


def render(content: bytes, tmp_path: Path) -> list[Image.Image]:
    source = tmp_path / "carnet.pdf"
    source.write_bytes(content)
    subprocess.run(
        ["pdftoppm", "-r", str(DPI), "-png", str(source), str(tmp_path / "p")], check=True
    )
    return [Image.open(p) for p in sorted(tmp_path.glob("p-*.png"))]


def words(content: bytes, tmp_path: Path) -> list[tuple[str, float, float, float, float]]:
    """(word, xMin, yMin, xMax, yMax) in points, from `pdftotext -bbox`."""
    source = tmp_path / "mots.pdf"
    source.write_bytes(content)
    html = subprocess.run(
        ["pdftotext", "-bbox", str(source), "-"], check=True, capture_output=True, text=True
    ).stdout
    pattern = re.compile(
        r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">([^<]*)</word>'
    )
    return [(w, float(a), float(b), float(c), float(d)) for a, b, c, d, w in pattern.findall(html)]


def test_no_printed_mark_of_a_booklet_is_within_5_mm_of_the_edge(
    keyring: Keyring, tmp_path: Path
) -> None:
    booklet = replace(
        make_booklet(keyring, new_booklet_number(), size=12),
        check_code="A1B2C3",
        public_url="https://pass-numerique.example.gouv.fr",
    )
    content = pdf.render_booklet(booklet)
    pages = render(content, tmp_path)
    assert len(pages) == 3  # the cover, then 10 + 2 cheques
    for number, page in enumerate(pages, start=1):
        assert marks_near_the_edge(page) == [], f"page {number} prints within 5 mm of the edge"
    edge = EDGE_MM * 72 / 25.4 - 0.01  # points; a hundredth of a point for rounding
    page_w, page_h = pdf.PAGE_WIDTH, pdf.PAGE_HEIGHT
    boxes = words(content, tmp_path)
    for word, x0, y0, x1, y1 in boxes:
        assert x0 >= edge and y0 >= edge and x1 <= page_w - edge and y1 <= page_h - edge, word
    # The cutting hint is still printed (now along the middle line, not at the foot).
    assert sum(1 for w, *_ in boxes if w == "Découpez") == 2


def test_the_measure_sees_a_mark_at_2_mm_from_the_edge(keyring: Keyring, tmp_path: Path) -> None:
    """The check fails on the old layout: the hint drawn at the foot of the page, 2.5 mm up."""
    from reportlab.lib.units import mm
    from reportlab.pdfgen.canvas import Canvas

    path = tmp_path / "ancien.pdf"
    canvas = Canvas(str(path), pagesize=(pdf.PAGE_WIDTH, pdf.PAGE_HEIGHT))
    canvas.setFont("Helvetica", 6)
    canvas.drawCentredString(pdf.PAGE_WIDTH / 2, 2.5 * mm, "Découpez en suivant les pointillés.")
    canvas.save()
    [page] = render(path.read_bytes(), tmp_path)
    assert marks_near_the_edge(page)
