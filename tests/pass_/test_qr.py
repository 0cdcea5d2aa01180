"""The fixed-version QR encoder gives, module for module, what the QR libraries give."""

from __future__ import annotations

import base64
import os

import pytest
import qrcode
import segno
import zxingcpp
from PIL import Image
from qrcode.util import MODE_ALPHA_NUM, QRData

from pass_ import qr
from pass_.pdf import qr_path


def random_token(length: int = 140) -> str:
    return ("PN1:" + base64.b32encode(os.urandom(100)).decode())[:length]


def reference_rows(text: str) -> list[str]:
    """python-qrcode with the same version, level, mode and mask (no quiet zone)."""
    code = qrcode.QRCode(
        version=qr.VERSION,
        error_correction=qrcode.constants.ERROR_CORRECT_M,
        mask_pattern=qr.MASK,
        border=0,
    )
    code.add_data(QRData(text, mode=MODE_ALPHA_NUM))
    code.make(fit=False)
    return ["".join("1" if m else "0" for m in row) for row in code.modules]


def to_image(rows: list[str], scale: int = 4, quiet: int = 4) -> Image.Image:
    size = len(rows) + 2 * quiet
    image = Image.new("L", (size, size), 255)
    for r, row in enumerate(rows):
        for c, module in enumerate(row):
            if module == "1":
                image.putpixel((c + quiet, r + quiet), 0)
    return image.resize((size * scale, size * scale), Image.NEAREST)


@pytest.mark.parametrize("length", range(1, qr.MAX_ALPHANUMERIC + 1))
def test_every_message_length_matches_python_qrcode(length: int) -> None:
    text = random_token(length)
    assert qr.rows(text) == reference_rows(text)


def test_cheque_tokens_match_segno_too() -> None:
    for _ in range(50):
        text = random_token()
        symbol = segno.make_qr(
            text,
            error="m",
            version=qr.VERSION,
            mask=qr.MASK,
            mode="alphanumeric",
            boost_error=False,
        )
        assert qr.rows(text) == ["".join(str(int(m)) for m in row) for row in symbol.matrix]


def read_qr_codes(image: Image.Image) -> list[zxingcpp.Result]:
    """zxing reading QR codes only: over a random symbol's modules, a reader of every format
    once found a linear barcode too ('9073' beside the token)."""
    return zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)


def test_symbols_decode_with_zxing() -> None:
    for _ in range(30):
        text = random_token()
        results = read_qr_codes(to_image(qr.rows(text)))
        assert [r.text for r in results] == [text]


def test_packed_and_matrix_describe_the_same_symbol() -> None:
    text = random_token()
    flat = qr.packed(text)
    assert flat == format(qr.matrix(text), f"0{qr.SIZE * qr.STRIDE}b")
    assert [flat[r * qr.STRIDE : r * qr.STRIDE + qr.SIZE] for r in range(qr.SIZE)] == qr.rows(text)
    assert all(flat[r * qr.STRIDE + qr.SIZE] == "0" for r in range(qr.SIZE))


def test_text_outside_the_fast_path_falls_back_to_a_general_encoder() -> None:
    for text in ("lower case é", "X" * 300):
        assert not qr.fits(text)
        with pytest.raises(ValueError):
            qr.packed(text)
        results = read_qr_codes(to_image(qr.rows(text)))
        assert [r.text for r in results] == [text]


def path_modules(size: int, path: str) -> list[str]:
    grid = [["0"] * size for _ in range(size)]
    for op in path.splitlines():
        x, y, w, h, name = op.split()
        assert (name, h) == ("re", "1")
        for col in range(int(x), int(x) + int(w)):
            row = size - 1 - int(y)
            assert grid[row][col] == "0", "rectangles never overlap"
            grid[row][col] = "1"
    return ["".join(row) for row in grid]


@pytest.mark.parametrize("text", [random_token(), random_token(37), "lower case é"])
def test_the_pdf_path_covers_exactly_the_dark_modules(text: str) -> None:
    size, path = qr_path(text)
    assert path_modules(size, path) == qr.rows(text)
