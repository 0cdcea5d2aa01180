"""Server-side SVG bar charts: readable on a phone, with text values and a table alternative.

Horizontal bars suit long French labels (« Assurance retraite (CNAV, CARSAT) ») on a narrow
screen: each row shows its label on a line, then one bar per series with its value written
beside it. The SVG is an image with a title and description for screen readers; the same
figures are always given again in a data table by the template (`chart_table`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape
from itertools import count

from markupsafe import Markup

WIDTH = 400
LABEL_H = 22
BAR_H = 18
BAR_GAP = 4
ROW_GAP = 14
VALUE_W = 90  # room kept right of the longest bar for its value
_ids = count(1)


@dataclass(frozen=True)
class Row:
    label: str
    values: Sequence[int]


def bar_chart(
    title: str,
    rows: Sequence[Row],
    series: Sequence[str],
    fmt: Callable[[int], str] = str,
    *,
    description: str | None = None,
) -> Markup:
    """An accessible horizontal bar chart; `series` names the bars of each row."""
    chart_id = f"graphique-{next(_ids)}"
    top = max((max(r.values, default=0) for r in rows), default=0) or 1
    per_row = LABEL_H + len(series) * (BAR_H + BAR_GAP) + ROW_GAP
    height = max(per_row * len(rows), 30)
    usable = WIDTH - VALUE_W
    desc = description or "; ".join(
        f"{r.label} : "
        + ", ".join(
            f"{s} {fmt(v)}" if len(series) > 1 else fmt(v)
            for s, v in zip(series, r.values, strict=True)
        )
        for r in rows
    )
    parts = [
        f'<svg viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-labelledby="{chart_id}-titre {chart_id}-desc" focusable="false" '
        f'xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{chart_id}-titre">{escape(title)}</title>',
        f'<desc id="{chart_id}-desc">{escape(desc)}</desc>',
    ]
    if not rows:
        parts.append('<text x="0" y="20" font-size="16">Aucune donnée pour le moment.</text>')
    y = 0
    for row in rows:
        parts.append(
            f'<text x="0" y="{y + 16}" font-size="16" font-weight="700">{escape(row.label)}</text>'
        )
        y += LABEL_H
        for index, value in enumerate(row.values):
            width = round(usable * value / top) if value > 0 else 0
            width = max(width, 2) if value > 0 else 0
            parts.append(
                f'<rect class="pn-bar pn-bar--{index + 1}" x="0" y="{y}" width="{width}" '
                f'height="{BAR_H}" rx="2"/>'
            )
            parts.append(
                f'<text x="{width + 6}" y="{y + BAR_H - 4}" font-size="15">'
                f"{escape(fmt(value))}</text>"
            )
            y += BAR_H + BAR_GAP
        y += ROW_GAP
    parts.append("</svg>")
    return Markup("".join(parts))
