"""Booklet PDFs: every QR code scans back to its signed token, on screen and in black and white,
every serial can be read, and the cover says what a beneficiary needs in plain French."""

from __future__ import annotations

import re
import subprocess
from datetime import date
from pathlib import Path

import pytest
import zxingcpp
from PIL import Image

from pass_.codes import new_serial
from pass_.issuance import new_booklet_number, normalise_booklet_number
from pass_.pdf import (
    BookletPrint,
    ChequePrint,
    SitePrint,
    long_date,
    money,
    render_booklet,
    render_booklets,
    render_booklets_parallel,
)
from pass_.tokens import ChequeClaims, Keyring, verify_with_jwks
from tests.support.system import ensure_debian_packages

SITES = [
    SitePrint("Médiathèque Œuvre-de-Lecture", "AdmiVille", "3 place de l'Hôtel-de-Ville"),
    SitePrint("France services d'AdmiVille", "AdmiVille", "12 rue de la République"),
    SitePrint("Association Numérique & Cœur", "Bourg-sur-Exemple", "1 chemin des Écoliers"),
]


@pytest.fixture(scope="module", autouse=True)
def poppler() -> None:
    ensure_debian_packages(["poppler-utils"], binaries=["pdftoppm", "pdftotext", "pdffonts"])


@pytest.fixture(scope="module")
def keyring(tmp_path_factory: pytest.TempPathFactory) -> Keyring:
    return Keyring.load_or_create(tmp_path_factory.mktemp("keys") / "keys")


def make_booklet(
    keyring: Keyring, number: str, size: int = 10, sites: list[SitePrint] = SITES
) -> BookletPrint:
    cheques = []
    for _ in range(size):
        serial = new_serial()
        token = keyring.sign(ChequeClaims(serial, 7, 1000, date(2026, 1, 31)))
        cheques.append(
            ChequePrint(
                serial, token, 1000, date(2025, 1, 1), date(2025, 12, 31), date(2026, 1, 31)
            )
        )
    return BookletPrint(
        number=number,
        programme_name="Pass numérique AdmiVille 2025",
        issuer_name="CCAS d'AdmiVille",
        territory_label="AdmiVille et alentours",
        cheques=cheques,
        sites=list(sites),
        help_line="01 23 45 67 89",
    )


def pages_as_images(pdf: bytes, tmp_path: Path, dpi: int = 150) -> list[Image.Image]:
    source = tmp_path / "booklet.pdf"
    source.write_bytes(pdf)
    subprocess.run(
        ["pdftoppm", "-r", str(dpi), "-png", str(source), str(tmp_path / "page")], check=True
    )
    return [Image.open(p) for p in sorted(tmp_path.glob("page-*.png"))]


def pdf_text(pdf: bytes, tmp_path: Path) -> str:
    # (also called from other modules, which do not have this module's fixture)
    ensure_debian_packages(["poppler-utils"], binaries=["pdftotext"])
    source = tmp_path / "text.pdf"
    source.write_bytes(pdf)
    return subprocess.run(
        ["pdftotext", "-layout", str(source), "-"], check=True, capture_output=True, text=True
    ).stdout


def decoded_qr_codes(images: list[Image.Image]) -> list[str]:
    found = []
    for image in images:
        found += [
            r.text
            for r in zxingcpp.read_barcodes(image)
            if r.format == zxingcpp.BarcodeFormat.QRCode
        ]
    return found


def black_and_white(image: Image.Image) -> Image.Image:
    """What a plain office printer does: every pixel black or white, no grey, no dithering."""
    return image.convert("L").point(lambda p: 255 if p > 127 else 0).convert("1")


def test_every_qr_code_of_a_booklet_scans_to_its_own_signed_token(
    keyring: Keyring, tmp_path: Path
) -> None:
    booklet = make_booklet(keyring, "2025-000001")
    images = pages_as_images(render_booklet(booklet), tmp_path)
    assert len(images) == 2  # cover, then 10 cheques on one page
    decoded = decoded_qr_codes(images[1:])
    assert sorted(decoded) == sorted(c.token for c in booklet.cheques)
    jwks = keyring.jwks()
    by_token = {c.token: c for c in booklet.cheques}
    for text in decoded:
        assert verify_with_jwks(text, jwks).serial == by_token[text].serial


def test_qr_codes_still_scan_printed_in_pure_black_and_white(
    keyring: Keyring, tmp_path: Path
) -> None:
    booklet = make_booklet(keyring, "2025-000002")
    images = pages_as_images(render_booklet(booklet), tmp_path, dpi=150)
    decoded = decoded_qr_codes([black_and_white(image) for image in images])
    assert sorted(decoded) == sorted([booklet.number] + [c.token for c in booklet.cheques])


def test_the_cover_qr_code_scans_to_the_booklet_number_the_hand_out_page_expects(
    keyring: Keyring, tmp_path: Path
) -> None:
    number = new_booklet_number()
    booklet = make_booklet(keyring, number, size=3)
    images = pages_as_images(render_booklet(booklet), tmp_path)
    assert decoded_qr_codes(images[:1]) == [number]
    # The hand-out page puts the scanned text in its field as is; the service must take it.
    assert normalise_booklet_number(number) == number
    assert decoded_qr_codes([black_and_white(images[0])]) == [number]


def test_only_the_first_cover_page_carries_the_booklet_qr_code(
    keyring: Keyring, tmp_path: Path
) -> None:
    sites = [SitePrint(f"Lieu numéro {i}", "AdmiVille", f"{i} rue Longue") for i in range(70)]
    number = new_booklet_number()
    images = pages_as_images(render_booklet(make_booklet(keyring, number, 2, sites)), tmp_path)
    covers = images[:-1]
    assert len(covers) >= 2
    assert decoded_qr_codes(covers) == [number]


def test_qr_codes_are_at_least_25_mm_wide(keyring: Keyring, tmp_path: Path) -> None:
    booklet = make_booklet(keyring, "2025-000003", size=1)
    dpi = 150
    images = pages_as_images(render_booklet(booklet), tmp_path, dpi=dpi)
    results = zxingcpp.read_barcodes(images[1], formats=zxingcpp.BarcodeFormat.QRCode)
    assert len(results) == 1
    position = results[0].position
    width_px = abs(position.top_right.x - position.top_left.x)
    assert width_px / dpi * 25.4 >= 25


def test_serials_values_and_instructions_are_printed_as_text(
    keyring: Keyring, tmp_path: Path
) -> None:
    booklet = make_booklet(keyring, "2025-000004")
    text = pdf_text(render_booklet(booklet), tmp_path)
    for cheque in booklet.cheques:
        assert cheque.serial in text
    assert text.count("10 €") >= 10
    for expected in (
        "Votre Pass numérique",
        "Carnet n° 2025-000004",
        "Ce carnet contient 10 chèques de 10 €.",
        "Ils valent 100 € en tout.",
        "C'est gratuit pour vous.",
        "Apportez ce carnet",
        "Pour 1 séance, vous donnez 1 chèque.",
        "Gardez bien vos chèques.",
        f"valables du {long_date(date(2025, 1, 1))} au {long_date(date(2025, 12, 31))}",
        "Médiathèque Œuvre-de-Lecture",
        "Association Numérique & Cœur",
        "1 chemin des Écoliers",
        "Bourg-sur-Exemple",
        "Téléphone : 01 23 45 67 89",
        "Chèque n° 1/10",
        "Chèque n° 10/10",
        "Valable du 01/01/2025",
        "au 31/12/2025 inclus",
        "jusqu'au 31/01/2026",
    ):
        assert expected in text, expected


def test_every_font_is_embedded_for_the_print_shop(keyring: Keyring, tmp_path: Path) -> None:
    source = tmp_path / "fonts.pdf"
    source.write_bytes(render_booklet(make_booklet(keyring, "2025-000005", size=2)))
    listing = subprocess.run(
        ["pdffonts", str(source)], check=True, capture_output=True, text=True
    ).stdout.splitlines()[2:]
    assert listing, "no fonts listed"
    for line in listing:
        assert line.split()[-5] == "yes", line  # the « emb » column


def test_a_bulk_order_is_one_pdf_with_every_booklet_and_every_cheque(
    keyring: Keyring, tmp_path: Path
) -> None:
    booklets = [make_booklet(keyring, f"2025-1000{i}") for i in range(3)]
    pdf = render_booklets(booklets)
    images = pages_as_images(pdf, tmp_path)
    assert len(images) == 6
    decoded = decoded_qr_codes(images)
    assert sorted(decoded) == sorted(
        [b.number for b in booklets] + [c.token for b in booklets for c in b.cheques]
    )
    text = pdf_text(pdf, tmp_path)
    for booklet in booklets:
        assert f"Carnet n° {booklet.number}" in text
        for cheque in booklet.cheques:
            assert cheque.serial in text


def test_a_long_list_of_sites_continues_on_more_cover_pages(
    keyring: Keyring, tmp_path: Path
) -> None:
    sites = [SitePrint(f"Lieu numéro {i}", "AdmiVille", f"{i} rue Longue") for i in range(70)]
    pdf = render_booklet(make_booklet(keyring, "2025-000006", size=5, sites=sites))
    text = pdf_text(pdf, tmp_path)
    for i in range(70):
        assert re.search(rf"Lieu numéro {i}\b", text), i
    assert "Où aller ? (suite)" in text
    images = pages_as_images(pdf, tmp_path)
    assert len(decoded_qr_codes(images)) == 5 + 1  # the cheques and the booklet number


def test_the_parallel_renderer_makes_the_very_same_pdf(keyring: Keyring) -> None:
    booklets = [make_booklet(keyring, f"2025-2{i:05d}") for i in range(25)]  # 250 cheques
    assert render_booklets_parallel(booklets, workers=2) == render_booklets(booklets)


@pytest.mark.parametrize(
    ("cents", "text"), [(1000, "10 €"), (1050, "10,50 €"), (5, "0,05 €"), (100000, "1 000 €")]
)
def test_amounts_are_written_the_french_way(cents: int, text: str) -> None:
    assert money(cents) == text


def test_dates_in_full_say_1er_for_the_first_of_the_month() -> None:
    assert long_date(date(2026, 1, 1)) == "1er janvier 2026"
    assert long_date(date(2025, 12, 31)) == "31 décembre 2025"
