"""Bar charts of the reports as shapes (rectangles and labels), laid out once and drawn by both
the HTML report (SVG) and the PDF one, so the two show the same picture.

A withheld number draws no bar: its row says "withheld" in grey, so a chart never shows the
size of what the privacy rules hide.
"""

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from cybermission.territory.privacy import WITHHELD, Shown

Colour = tuple[float, float, float]
SEVERITY_COLOURS: Final[dict[str, Colour]] = {
    "critical": (0.60, 0.05, 0.10),
    "high": (0.89, 0.33, 0.11),
    "medium": (0.96, 0.68, 0.15),
    "low": (0.30, 0.55, 0.80),
    "info": (0.62, 0.66, 0.70),
}
BAR: Final[Colour] = (0.16, 0.40, 0.62)
GREY: Final[Colour] = (0.55, 0.55, 0.55)
INK: Final[Colour] = (0.10, 0.10, 0.10)
_ROW_H: Final = 16.0
_LABEL_W: Final = 130.0


@dataclass(frozen=True, slots=True)
class Rect:
    x: float
    y: float  # from the chart's top
    width: float
    height: float
    colour: Colour


@dataclass(frozen=True, slots=True)
class Label:
    x: float
    y: float  # the baseline, from the chart's top
    text: str
    size: float = 8.0
    colour: Colour = INK


@dataclass
class Chart:
    title: str
    width: float
    height: float
    rects: list[Rect] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)


def horizontal_bars(title: str, rows: Sequence[tuple[str, Shown]], *, width: float) -> Chart:
    """One bar per row, scaled to the largest shown value; withheld rows say so."""
    chart = Chart(title=title, width=width, height=_ROW_H * max(len(rows), 1) + 4)
    values = [v for _, v in rows if v != WITHHELD]
    top = max([int(v) for v in values] + [1])
    span = width - _LABEL_W - 40
    for index, (name, value) in enumerate(rows):
        y = index * _ROW_H
        chart.labels.append(Label(0, y + 11, name[:28]))
        if value == WITHHELD:
            chart.labels.append(Label(_LABEL_W, y + 11, WITHHELD, colour=GREY))
            continue
        length = span * int(value) / top
        chart.rects.append(Rect(_LABEL_W, y + 3, max(length, 1.0), _ROW_H - 6, BAR))
        chart.labels.append(Label(_LABEL_W + length + 4, y + 11, str(value)))
    if not rows:
        chart.labels.append(Label(0, 11, "nothing to show", colour=GREY))
    return chart


def stacked_columns(
    title: str,
    points: Sequence[tuple[str, Mapping[str, Shown]]],
    *,
    width: float,
    height: float = 150.0,
) -> Chart:
    """One column per point, stacked by severity; the withheld severities of a point add nothing
    to its column, which is marked "+w" (each shown part is a disclosed number on its own)."""
    chart = Chart(title=title, width=width, height=height + 30)
    totals = [sum(int(v) for v in values.values() if v != WITHHELD) for _, values in points]
    top = max([*totals, 1])
    slot = (width - 30) / max(len(points), 1)
    base = height
    chart.labels.append(Label(0, 8, str(top)))
    chart.labels.append(Label(0, base, "0"))
    for index, (name, values) in enumerate(points):
        x = 30 + index * slot
        chart.labels.append(Label(x, base + 12, name, size=6.5))
        y = base
        for severity, colour in SEVERITY_COLOURS.items():
            value = values.get(severity, 0)
            if value == WITHHELD or int(value) == 0:
                continue
            h = (height - 10) * int(value) / top
            y -= h
            chart.rects.append(Rect(x + 2, y, slot - 4, h, colour))
        withheld = any(v == WITHHELD for v in values.values())
        label = str(totals[index]) + ("+w" if withheld else "")
        ink = GREY if withheld else INK
        chart.labels.append(Label(x + 2, y - 2, label, size=6.5, colour=ink))
    legend_x = 30.0
    for severity, colour in SEVERITY_COLOURS.items():
        chart.rects.append(Rect(legend_x, base + 18, 8, 8, colour))
        chart.labels.append(Label(legend_x + 11, base + 25, severity, size=7))
        legend_x += 60
    note = "+w: some severities withheld"
    chart.labels.append(Label(legend_x, base + 25, note, size=7, colour=GREY))
    return chart


def svg(chart: Chart) -> str:
    """The chart as an inline SVG element (values escaped: labels are names and numbers)."""

    def hex_of(colour: Colour) -> str:
        return "#" + "".join(f"{round(c * 255):02x}" for c in colour)

    def esc(text: str) -> str:
        return html.escape(text, quote=True)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{chart.width:.0f}" '
        f'height="{chart.height:.0f}" aria-label="{esc(chart.title)}">'
    ]
    for r in chart.rects:
        parts.append(
            f'<rect x="{r.x:.1f}" y="{r.y:.1f}" width="{r.width:.1f}" height="{r.height:.1f}" '
            f'fill="{hex_of(r.colour)}"/>'
        )
    for label in chart.labels:
        parts.append(
            f'<text x="{label.x:.1f}" y="{label.y:.1f}" font-size="{label.size:.1f}" '
            f'fill="{hex_of(label.colour)}">{esc(label.text)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
