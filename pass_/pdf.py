"""Print-ready A4 PDFs of booklets: a cover page in plain French and 10 cheque tiles a page.

The cover carries the booklet number and its check code as text, and a QR code that opens
« mon pass » (`<public_url>/mon-pass/<number>?code=<check code>`: what is left on the booklet)
when a phone camera reads it; the agent's hand-out page reads the number from the same code.
Each cheque's QR code holds its signed token. Every printed mark stays at least 5 mm from the
sheet's edges (`MARGIN`): office printers do not print the last 4–5 mm.

Speed matters for bulk orders (a printer's order is 1,000 booklets × 10 cheques in one PDF):
- the QR modules come from `pass_.qr` (a fixed version 6-M symbol, ~20 µs) and are drawn as
  vector rectangles, one per run of dark modules in a row, all in one path filled once (no seams
  between abutting modules), in module units under one `cm` transform so the numbers are short;
- what is the same on many pages (cut lines, labels, the cover's instructions and list of sites)
  is drawn once into a PDF form XObject and placed by reference;
- `render_booklets_parallel` computes the QR symbols in worker processes meanwhile.
Fonts are embedded (Bitstream Vera from reportlab, DejaVu Sans Mono Bold shipped in
`pass_/fonts/`): they cover French accents, « », œ and €, and print shops reject PDFs that rely
on the reader's fonts. Everything is black on white: nothing needs colour to be understood.
"""

from __future__ import annotations

import contextlib
import io
import math
import multiprocessing
import os
import re
import threading
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import reportlab
from reportlab import rl_config
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfdoc, pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas

from pass_ import qr

SANS = "PassSans"
SANS_BOLD = "PassSans-Bold"
MONO_BOLD = "PassMono-Bold"

PAGE_WIDTH, PAGE_HEIGHT = A4
COLUMNS, ROWS = 2, 5
TILES_PER_PAGE = COLUMNS * ROWS
TILE_WIDTH = PAGE_WIDTH / COLUMNS  # 105 mm
TILE_HEIGHT = PAGE_HEIGHT / ROWS  # 59.4 mm
QR_SIZE = 28 * mm  # the symbol without its quiet zone; the zone is 4 modules, kept white
QR_QUIET_MODULES = 4
# The cover's QR code holds the « mon pass » address of the booklet (or, without a public
# address, the bare number `CN-XXXX-XXXX`): the agent's hand-out page reads the number from it.
COVER_QR_SIZE = 24 * mm
COVER_QR_TOP = 10 * mm  # from the top edge, above the title's line; 4 white modules all round
MARGIN = 5 * mm  # office printers do not print the last 4–5 mm of a sheet
COVER_MARGIN = 18 * mm

_MONTHS = (
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
)
_RUN = re.compile("1+")


@dataclass(frozen=True, slots=True)
class SitePrint:
    name: str
    commune: str
    address: str


@dataclass(frozen=True, slots=True)
class ChequePrint:
    serial: str
    token: str
    value_cents: int
    valid_from: date
    valid_until: date
    redeem_until: date


@dataclass(frozen=True, slots=True)
class BookletPrint:
    number: str
    programme_name: str
    issuer_name: str
    territory_label: str
    cheques: list[ChequePrint]
    sites: list[SitePrint]
    help_line: str = ""  # e.g. a phone number, printed on the cover when set
    check_code: str = ""  # printed beside the number: with it, /mon-pass shows what is left
    public_url: str = ""  # where people reach the service (the cover's QR code opens it)

    @property
    def cover_url(self) -> str:
        """What the cover's QR code holds: the booklet's « mon pass » page, or its number."""
        if not self.public_url:
            return self.number
        code = f"?code={self.check_code}" if self.check_code else ""
        return f"{self.public_url.rstrip('/')}/mon-pass/{self.number}{code}"


def render_booklet(b: BookletPrint) -> bytes:
    """One booklet: its cover page(s), then its cheques."""
    return render_booklets([b])


def render_booklets(booklets: Sequence[BookletPrint]) -> bytes:
    """One print-ready PDF for many booklets, each starting on its own cover page."""
    return _render(booklets, None)


def render_booklets_parallel(booklets: Sequence[BookletPrint], workers: int = 2) -> bytes:
    """The same PDF as `render_booklets`, with the QR symbols computed by `workers` processes.

    The symbols (about a third of the work) are computed in a process pool while this process
    lays out the pages as their results arrive, in order; the PDF is written by one process,
    so nothing has to be merged afterwards. Worth it from a few hundred cheques. In a process
    that runs threads the workers start from a fork server, which (as with any multiprocessing
    start method but fork) needs scripts to guard their entry point with
    `if __name__ == "__main__":`.
    """
    tokens = [cheque.token for booklet in booklets for cheque in booklet.cheques]
    if workers <= 1 or len(tokens) < 200:
        return render_booklets(booklets)
    # fork is cheapest (the worker inherits the look-up tables) but unsafe in a process that
    # runs threads (a web server): there, start workers from a clean server process.
    method = "fork" if threading.active_count() == 1 and os.name == "posix" else "forkserver"
    context = multiprocessing.get_context(method)
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        chunk = max(50, min(500, len(tokens) // (workers * 8)))
        return _render(booklets, pool.map(qr_path, tokens, chunksize=chunk))


def _render(booklets: Sequence[BookletPrint], paths: Iterator[tuple[int, str]] | None) -> bytes:
    _register_fonts()
    buffer = io.BytesIO()
    with _fast_streams():
        canvas = Canvas(
            buffer, pagesize=A4, invariant=True, pageCompression=1, initialFontName=SANS
        )
        canvas.setTitle("Pass numérique — carnets de chèques")
        canvas.setAuthor("Pass numérique")
        canvas.setCreator("passnum")
        renderer = _Renderer(canvas, paths)
        for booklet in booklets:
            renderer.booklet(booklet)
        canvas.save()
    return buffer.getvalue()


def qr_path(token: str) -> tuple[int, str]:
    """(modules a side, PDF path operators) of a token's QR symbol, in module units, y upwards.

    One `re` per horizontal run of dark modules (runs are cut at every 7th column, which the
    look-up tables need; it changes nothing on paper as the whole path is filled at once).
    """
    if qr.fits(token):
        matrix = qr.matrix(token)
        tables = _RUN_TABLES or _build_run_tables()
        parts: list[str] = []
        for row in range(qr.SIZE):
            bits = (matrix >> _ROW_SHIFTS[row]) & _ROW_MASK
            t0, t1, t2, t3, t4, t5 = tables[row]
            parts += (
                t0[bits >> 35],
                t1[(bits >> 28) & 127],
                t2[(bits >> 21) & 127],
                t3[(bits >> 14) & 127],
                t4[(bits >> 7) & 127],
                t5[bits & 127],
            )
        return qr.SIZE, "".join(parts)
    rows = qr.rows(token)
    size, stride = len(rows), len(rows) + 1
    ops = []
    for match in _RUN.finditer("0".join(rows) + "0"):
        start, end = match.span()
        row, col = divmod(start, stride)
        ops.append(f"{col} {size - 1 - row} {end - start} 1 re\n")
    return size, "".join(ops)


# A row of qr.matrix is 42 bits (41 modules and a light separator), read as 6 chunks of 7
# columns; _RUN_TABLES[row][chunk][value] holds the `re` operators of that chunk's runs, so a
# symbol is 246 look-ups (~30 µs) instead of formatting ~430 rectangles (~500 µs).
_CHUNK = 7
_ROW_MASK = (1 << qr.STRIDE) - 1
_ROW_SHIFTS = [(qr.SIZE - 1 - row) * qr.STRIDE for row in range(qr.SIZE)]
_RUN_TABLES: list[list[list[str]]] = []


def _build_run_tables() -> list[list[list[str]]]:
    assert qr.STRIDE == 6 * _CHUNK
    for row in range(qr.SIZE):
        y = qr.SIZE - 1 - row
        per_chunk = []
        for chunk in range(qr.STRIDE // _CHUNK):
            table = []
            for value in range(1 << _CHUNK):
                bits = format(value, f"0{_CHUNK}b")
                ops = "".join(
                    f"{chunk * _CHUNK + m.start()} {y} {m.end() - m.start()} 1 re\n"
                    for m in _RUN.finditer(bits)
                )
                table.append(ops)
            per_chunk.append(table)
        _RUN_TABLES.append(per_chunk)
    return _RUN_TABLES


def money(cents: int) -> str:
    """« 10 € », « 10,50 € », « 1 000 € » (plain spaces, so text extraction finds them)."""
    euros, rest = divmod(cents, 100)
    whole = f"{euros:,}".replace(",", " ")
    return f"{whole} €" if rest == 0 else f"{whole},{rest:02d} €"


def short_date(day: date) -> str:
    return day.strftime("%d/%m/%Y")


def long_date(day: date) -> str:
    """« 1er janvier 2026 », « 31 décembre 2025 »: dates in full are easier to read."""
    first = "1er" if day.day == 1 else str(day.day)
    return f"{first} {_MONTHS[day.month - 1]} {day.year}"


# --- internals ---------------------------------------------------------------------------------


class _FastFlate(pdfdoc.PDFStreamFilterZCompress):
    """Flate at level 1: 5 times faster than the default level 6 on pages of QR rectangles, for
    files about 1.5 times bigger (≈ 1.5 kB a cheque)."""

    def encode(self, text: str | bytes) -> bytes:
        return zlib.compress(text.encode("utf8") if isinstance(text, str) else text, 1)


@contextlib.contextmanager
def _fast_streams() -> Iterator[None]:
    """Streams as reportlab makes them for this document only: binary, not ASCII85 (reportlab's
    ASCII85 step took 40 % of the time without its C accelerator, and makes files 25 % bigger;
    every reader and printer takes binary streams), and flate at level 1."""
    saved = rl_config.useA85, pdfdoc.PDFZCompress
    rl_config.useA85 = 0
    pdfdoc.PDFZCompress = _FastFlate()
    try:
        yield
    finally:
        rl_config.useA85, pdfdoc.PDFZCompress = saved


_fonts_registered = False


def _register_fonts() -> None:
    global _fonts_registered
    if _fonts_registered:
        return
    vera = Path(reportlab.__file__).parent / "fonts"
    pdfmetrics.registerFont(TTFont(SANS, str(vera / "Vera.ttf")))
    pdfmetrics.registerFont(TTFont(SANS_BOLD, str(vera / "VeraBd.ttf")))
    here = Path(__file__).parent / "fonts"
    pdfmetrics.registerFont(TTFont(MONO_BOLD, str(here / "DejaVuSansMono-Bold.ttf")))
    _fonts_registered = True


def _fit(text: str, font: str, size: float, width: float) -> str:
    """`text`, shortened with an ellipsis if it is wider than `width`."""
    if pdfmetrics.stringWidth(text, font, size) <= width:
        return text
    while text and pdfmetrics.stringWidth(text + "…", font, size) > width:
        text = text[:-1]
    return text.rstrip() + "…"


def _wrap(text: str, font: str, size: float, width: float) -> list[str]:
    lines: list[str] = []
    line = ""
    for word in text.split():
        candidate = f"{line} {word}".strip()
        if line and pdfmetrics.stringWidth(candidate, font, size) > width:
            lines.append(line)
            line = word
        else:
            line = candidate
    if line:
        lines.append(line)
    return lines


class _Renderer:
    """Draws booklets on one canvas, keeping the forms it has already made."""

    def __init__(self, canvas: Canvas, paths: Iterator[tuple[int, str]] | None) -> None:
        self.c = canvas
        self.paths = paths  # precomputed qr_path results, in cheque order
        self.forms: dict[tuple[object, ...], str] = {}

    def _form(self, key: tuple[object, ...], draw, width: float, height: float) -> str:  # type: ignore[no-untyped-def]
        name = self.forms.get(key)
        if name is None:
            name = f"F{len(self.forms)}"
            self.c.beginForm(name, 0, 0, width, height)
            draw()
            self.c.endForm()
            self.forms[key] = name
        return name

    # --- booklet ---

    def booklet(self, b: BookletPrint) -> None:
        self.cover(b)
        total = len(b.cheques)
        for first in range(0, total, TILES_PER_PAGE):
            self.cheque_page(b, first, total)

    # --- cheque pages ---

    def cheque_page(self, b: BookletPrint, first: int, total: int) -> None:
        c = self.c
        c.doForm(self._form(("cutlines",), self._cut_lines, PAGE_WIDTH, PAGE_HEIGHT))
        for slot, cheque in enumerate(b.cheques[first : first + TILES_PER_PAGE]):
            col, row = slot % COLUMNS, slot // COLUMNS
            x, y = col * TILE_WIDTH, PAGE_HEIGHT - (row + 1) * TILE_HEIGHT
            key = (
                "tile",
                b.programme_name,
                cheque.value_cents,
                cheque.valid_from,
                cheque.valid_until,
                cheque.redeem_until,
            )
            name = self._form(
                key,
                lambda ch=cheque: self._tile_static(b.programme_name, ch),
                TILE_WIDTH,
                TILE_HEIGHT,
            )
            c.saveState()
            c.translate(x, y)
            c.doForm(name)
            self._tile_dynamic(b, cheque, first + slot + 1, total)
            c.restoreState()
        c.showPage()

    CUT_HINT = "Découpez en suivant les pointillés."

    def _cut_lines(self) -> None:
        """Dashed cut lines that stop `MARGIN` from the edges, and the hint along the middle
        vertical line (in the gap between two tiles' margins, on a white ground that
        interrupts the line), far from any edge: at the foot of the sheet it sat 2 mm from
        the edge, where most printers print nothing."""
        c = self.c
        c.setLineWidth(0.4)
        c.setDash(3, 3)
        for col in range(1, COLUMNS):
            c.line(col * TILE_WIDTH, MARGIN, col * TILE_WIDTH, PAGE_HEIGHT - MARGIN)
        for row in range(1, ROWS):
            c.line(MARGIN, row * TILE_HEIGHT, PAGE_WIDTH - MARGIN, row * TILE_HEIGHT)
        c.setDash()
        width = pdfmetrics.stringWidth(self.CUT_HINT, SANS, 6)
        c.saveState()
        c.translate(TILE_WIDTH, PAGE_HEIGHT / 2)
        c.rotate(90)
        c.setFillGray(1)
        c.rect(-width / 2 - 1 * mm, -1.6 * mm, width + 2 * mm, 3.2 * mm, stroke=0, fill=1)
        c.setFillGray(0)
        c.setFont(SANS, 6)
        c.drawCentredString(0, -0.75 * mm, self.CUT_HINT)
        c.restoreState()

    # Tile geometry (origin at the tile's bottom-left corner).
    _QR_X = MARGIN + 2 * mm
    _QR_Y = 13 * mm
    _RIGHT_X = MARGIN + 2 * mm + QR_SIZE + 5 * mm
    _RIGHT_W = TILE_WIDTH - MARGIN - (MARGIN + 2 * mm + QR_SIZE + 5 * mm)
    _TOP_Y = TILE_HEIGHT - MARGIN - 3.2 * mm

    def _tile_static(self, programme_name: str, cheque: ChequePrint) -> None:
        c = self.c
        right = TILE_WIDTH - MARGIN
        # Room left by « Chèque n° 10/10 », drawn on the right for each cheque.
        room = (
            TILE_WIDTH
            - 2 * MARGIN
            - pdfmetrics.stringWidth("Chèque n° 100/100", SANS_BOLD, 8.5)
            - 3 * mm
        )
        c.setFont(SANS_BOLD, 8.5)
        c.drawString(MARGIN, self._TOP_Y, _fit(programme_name, SANS_BOLD, 8.5, room))
        x, w = self._RIGHT_X, self._RIGHT_W
        c.setFont(SANS_BOLD, 24)
        c.drawString(x, 37 * mm, money(cheque.value_cents))
        c.setFont(SANS, 8.5)
        c.drawString(x, 32.5 * mm, f"Valable du {short_date(cheque.valid_from)}")
        c.drawString(x, 29 * mm, f"au {short_date(cheque.valid_until)} inclus")
        c.setFont(SANS, 7)
        c.drawString(x, 23 * mm, _fit("Code, si le QR code ne marche pas :", SANS, 7, w))
        c.setFont(SANS_BOLD, 8)
        c.drawRightString(right, MARGIN + 1.2 * mm, "1 chèque = 1 séance")
        room = (
            TILE_WIDTH
            - 2 * MARGIN
            - pdfmetrics.stringWidth("1 chèque = 1 séance", SANS_BOLD, 8)
            - 3 * mm
        )
        c.setFont(SANS, 6.5)
        c.drawString(
            MARGIN,
            MARGIN + 1.2 * mm,
            _fit(
                f"Encaissement par le lieu jusqu'au {short_date(cheque.redeem_until)}",
                SANS,
                6.5,
                room,
            ),
        )

    def _tile_dynamic(self, b: BookletPrint, cheque: ChequePrint, k: int, total: int) -> None:
        c = self.c
        right = TILE_WIDTH - MARGIN
        c.setFont(SANS_BOLD, 8.5)
        c.drawRightString(right, self._TOP_Y, f"Chèque n° {k}/{total}")
        c.setFont(MONO_BOLD, 12.5)
        c.drawString(self._RIGHT_X, 17.5 * mm, cheque.serial)
        c.setFont(SANS, 7)
        c.drawString(self._RIGHT_X, 12.5 * mm, f"Carnet n° {b.number}")
        modules, path = next(self.paths) if self.paths is not None else qr_path(cheque.token)
        scale = QR_SIZE / modules
        c.addLiteral(
            f"q {scale:.5f} 0 0 {scale:.5f} {self._QR_X:.3f} {self._QR_Y:.3f} cm 0 g\n{path}f Q"
        )

    # --- cover ---

    def cover(self, b: BookletPrint) -> None:
        c = self.c
        values = {ch.value_cents for ch in b.cheques}
        valid_from = min((ch.valid_from for ch in b.cheques), default=None)
        valid_until = max((ch.valid_until for ch in b.cheques), default=None)
        key = (
            "cover",
            b.programme_name,
            b.issuer_name,
            b.territory_label,
            b.help_line,
            b.public_url,
            len(b.cheques),
            tuple(sorted(values)),
            sum(ch.value_cents for ch in b.cheques),
            valid_from,
            valid_until,
            tuple(b.sites),
        )
        name = self.forms.get(key)
        if name is None:
            pages = self._cover_pages(b, values, valid_from, valid_until)
            names = []
            for i, draw in enumerate(pages):
                names.append(self._form((*key, i), draw, PAGE_WIDTH, PAGE_HEIGHT))
            name = "|".join(names)
            self.forms[key] = name
        for i, form in enumerate(name.split("|")):
            c.doForm(form)
            c.setFont(SANS_BOLD, 14)
            if i == 0:
                y = PAGE_HEIGHT - COVER_MARGIN - 46
                heading = f"Carnet n° {b.number}"
                c.drawString(COVER_MARGIN, y, heading)
                if b.check_code:
                    x = COVER_MARGIN + pdfmetrics.stringWidth(heading, SANS_BOLD, 14) + 5 * mm
                    c.setFont(SANS, 12)
                    c.drawString(x, y, "Code :")
                    c.setFont(MONO_BOLD, 14)
                    c.drawString(x + pdfmetrics.stringWidth("Code : ", SANS, 12), y, b.check_code)
                self._cover_qr(b.cover_url)
            else:
                c.drawRightString(
                    PAGE_WIDTH - COVER_MARGIN,
                    PAGE_HEIGHT - COVER_MARGIN - 20,
                    f"Carnet n° {b.number}",
                )
                c.setFont(SANS, 9)
                c.drawRightString(
                    PAGE_WIDTH - COVER_MARGIN, COVER_MARGIN - 10, f"Page {i + 1} de la couverture"
                )
            c.showPage()

    def _cover_qr(self, content: str) -> None:
        """The « mon pass » address (or the number) as a QR code in the top right corner."""
        modules, path = qr_path(content)
        scale = COVER_QR_SIZE / modules
        x = PAGE_WIDTH - COVER_MARGIN - COVER_QR_SIZE
        y = PAGE_HEIGHT - COVER_QR_TOP - COVER_QR_SIZE
        self.c.addLiteral(f"q {scale:.5f} 0 0 {scale:.5f} {x:.3f} {y:.3f} cm 0 g\n{path}f Q")

    def _cover_pages(
        self, b: BookletPrint, values: set[int], valid_from: date | None, valid_until: date | None
    ) -> list:  # type: ignore[type-arg]
        left = COVER_MARGIN
        width = PAGE_WIDTH - 2 * COVER_MARGIN
        n = len(b.cheques)
        total = sum(ch.value_cents for ch in b.cheques)
        if len(values) == 1:
            contents = f"Ce carnet contient {n} chèques de {money(next(iter(values)))}."
        else:
            contents = f"Ce carnet contient {n} chèques."
        validity = (
            f"Vos chèques sont valables du {long_date(valid_from)} au {long_date(valid_until)}."
            if valid_from and valid_until
            else ""
        )
        sections: list[tuple[str, list[str]]] = [
            (
                "C'est quoi ?",
                [
                    "Le Pass numérique vous aide à utiliser Internet.",
                    "Par exemple : écrire un e-mail, faire une démarche en ligne.",
                    "Une personne vous aide pendant une séance.",
                    "C'est gratuit pour vous.",
                ],
            ),
            (
                "Comment faire ?",
                [
                    "1. Choisissez un lieu dans la liste plus bas.",
                    "2. Allez dans ce lieu et demandez un rendez-vous.",
                    "3. Apportez ce carnet à chaque rendez-vous.",
                    "4. Pour 1 séance, vous donnez 1 chèque.",
                ],
            ),
            (
                "À savoir",
                [
                    contents,
                    f"Ils valent {money(total)} en tout.",
                    validity,
                    "Gardez bien vos chèques.",
                    (
                        "Combien de chèques vous reste-t-il ? Scannez le QR code en haut "
                        "de cette page avec votre téléphone, ou allez sur "
                        f"{b.public_url.rstrip('/')}/mon-pass avec le numéro et le code "
                        "du carnet."
                    )
                    if b.public_url
                    else "",
                    "Vous perdez votre carnet ?",
                    f"Prévenez vite : {b.issuer_name}.",
                ],
            ),
        ]
        help_lines = [f"Une question ? Demandez à : {b.issuer_name}."]
        if b.help_line:
            help_lines.append(f"Téléphone : {b.help_line}")
        body_size, leading = 12.5, 17.0
        site_height = 40.0
        columns = 2
        column_gap = 8 * mm
        column_width = (width - column_gap) / columns
        bottom = COVER_MARGIN + 30

        # How many rows of sites fit on the first page, then on each following page; the y of
        # the first row is computed as the drawing code below moves down the page.
        sections_height = sum(
            22
            + 6
            + leading * sum(len(_wrap(line, SANS, body_size, width - 10)) for line in lines if line)
            for _, lines in sections
        )
        top = PAGE_HEIGHT - COVER_MARGIN - 20
        lowest = bottom + 40 + 24.5  # the last line of a site stays above the footer's rule
        first_rows = max(0, int((top - 76 - sections_height - 40 - lowest) // site_height) + 1)
        next_rows = int((top - 40 - lowest) // site_height) + 1
        sites = list(b.sites)
        chunks = [sites[: first_rows * columns]]
        rest = sites[first_rows * columns :]
        while rest:
            chunks.append(rest[: next_rows * columns])
            rest = rest[next_rows * columns :]

        def draw_sites(y: float, chunk: list[SitePrint]) -> None:
            c = self.c
            rows = max(1, math.ceil(len(chunk) / columns))  # balanced columns
            for i, site in enumerate(chunk):
                col, row = divmod(i, rows)
                x = left + col * (column_width + column_gap)
                top = y - row * site_height
                c.setFont(SANS_BOLD, 10.5)
                c.drawString(x, top, _fit(site.name, SANS_BOLD, 10.5, column_width))
                c.setFont(SANS, 10)
                c.drawString(x, top - 12.5, _fit(site.address, SANS, 10, column_width))
                c.drawString(x, top - 24.5, _fit(site.commune, SANS, 10, column_width))

        def footer() -> None:
            c = self.c
            c.setLineWidth(0.8)
            c.setDash()
            c.line(left, bottom + 32, left + width, bottom + 32)
            c.setFont(SANS_BOLD, 12)
            for i, line in enumerate(help_lines):
                c.drawString(left, bottom + 14 - 15 * i, _fit(line, SANS_BOLD, 12, width))
            c.setFont(SANS, 8)
            c.drawString(
                left,
                COVER_MARGIN - 10,
                _fit(f"{b.programme_name} · {b.territory_label}", SANS, 8, width * 0.7),
            )

        def first_page() -> None:
            c = self.c
            y = PAGE_HEIGHT - COVER_MARGIN - 20
            c.setFont(SANS_BOLD, 28)
            c.drawString(left, y, "Votre Pass numérique")
            y -= 46  # the booklet number goes in between, drawn for each booklet
            c.setFont(SANS, 12)
            c.drawString(
                left, y, _fit(f"{b.programme_name} · {b.territory_label}", SANS, 12, width)
            )
            y -= 30
            for title, lines in sections:
                c.setFont(SANS_BOLD, 15)
                c.drawString(left, y, title)
                y -= 22
                c.setFont(SANS, body_size)
                for line in lines:
                    for part in _wrap(line, SANS, body_size, width - 10) if line else []:
                        c.drawString(left + 10, y, part)
                        y -= leading
                y -= 6
            c.setFont(SANS_BOLD, 15)
            c.drawString(left, y, "Où aller ?")
            y -= 16
            c.setFont(SANS, 11)
            if sites:
                c.drawString(
                    left,
                    y,
                    _fit(f"Les lieux du Pass numérique ({b.territory_label}) :", SANS, 11, width),
                )
            else:
                c.drawString(left, y, f"Demandez la liste des lieux à {b.issuer_name}.")
            draw_sites(y - 24, chunks[0])
            footer()

        def next_page(chunk: list[SitePrint]) -> None:
            c = self.c
            y = PAGE_HEIGHT - COVER_MARGIN - 20
            c.setFont(SANS_BOLD, 15)
            c.drawString(left, y, "Où aller ? (suite)")
            draw_sites(y - 40, chunk)
            footer()

        return [first_page] + [lambda ch=chunk: next_page(ch) for chunk in chunks[1:]]
