"""Charts drawn on the server as inline SVG (no script, no library): the open findings of a site
by severity over time, stacked (critical at the bottom, the top edge is the total), each band a
step shape: a count holds until the next moment."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from xml.sax.saxutils import escape, quoteattr

from markupsafe import Markup

from cybermission.findings.models import Severity
from cybermission.scans.finding_trend import TrendPoint

WIDTH, HEIGHT = 760, 280
LEFT, RIGHT, TOP, BOTTOM = 48, 120, 16, 36
COLOURS = {
    Severity.CRITICAL: "#a4001d",
    Severity.HIGH: "#d9640c",
    Severity.MEDIUM: "#b89000",
    Severity.LOW: "#3b7d3f",
    Severity.INFO: "#6b7280",
}
ORDER = [Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW, Severity.INFO]


@dataclass(frozen=True, slots=True)
class Frame:
    """Where a value lands in the plot area."""

    points: int
    top: int

    def x(self, index: int) -> float:
        span = WIDTH - LEFT - RIGHT
        return LEFT + (span * index / (self.points - 1) if self.points > 1 else span)

    def y(self, value: int) -> float:
        return TOP + (HEIGHT - TOP - BOTTOM) * (1 - value / self.top)


def _top(highest: int) -> int:
    """A round upper bound of the y axis (1, 2, 5 times a power of ten) at or above ``highest``."""
    bound = 1
    while True:
        for factor in (1, 2, 5):
            if bound * factor >= highest:
                return max(bound * factor, 1)
        bound *= 10


def _steps(frame: Frame, values: Sequence[int]) -> str:
    """A step line: the count holds until the next moment, then moves."""
    coords = [f"{frame.x(0):.1f},{frame.y(values[0]):.1f}"]
    for i in range(1, len(values)):
        coords.append(f"{frame.x(i):.1f},{frame.y(values[i - 1]):.1f}")
        coords.append(f"{frame.x(i):.1f},{frame.y(values[i]):.1f}")
    return " ".join(coords)


def trend_svg(points: Sequence[TrendPoint], *, title: str) -> Markup:
    """The chart of ``points`` (ascending moments), with ``title`` for assistive technology."""
    latest = points[-1].counts if points else dict.fromkeys(Severity, 0)
    summary = ", ".join(f"{latest[s]} {s}" for s in ORDER)
    highest = max((p.total for p in points), default=0)
    frame = Frame(points=len(points), top=_top(highest))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" class="trend" id="trend" '
        f'aria-labelledby="trend-title" data-latest={quoteattr(summary)}>',
        f'<title id="trend-title">{escape(title)}: now {escape(summary)}</title>',
        f'<rect x="{LEFT}" y="{TOP}" width="{WIDTH - LEFT - RIGHT}" '
        f'height="{HEIGHT - TOP - BOTTOM}" fill="#fafbfc" stroke="#d5d9df"/>',
    ]
    for tick in (0, frame.top // 2, frame.top) if frame.top > 1 else (0, 1):
        y = frame.y(tick)
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e6e8eb"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">{tick}</text>'
        )
    if not points:
        parts.append(
            f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" font-size="13" '
            'fill="#6b7280">no finding on this site yet</text></svg>'
        )
        return Markup("".join(parts))  # noqa: S704 - every value above is escaped or a number
    first, last = points[0].at, points[-1].at
    # Seconds matter on a chart of the last minutes (a rescan just now), not on one of months.
    shape = "%Y-%m-%d %H:%M:%S" if last - first < timedelta(hours=1) else "%Y-%m-%d %H:%M"
    for x, when, anchor in ((LEFT, first, "start"), (WIDTH - RIGHT, last, "end")):
        label = escape(when.strftime(shape))
        parts.append(
            f'<text x="{x}" y="{HEIGHT - 12}" text-anchor="{anchor}" font-size="11">{label}</text>'
        )
    below = [0] * len(points)
    for rank, severity in enumerate(ORDER):
        values = [p.counts[severity] for p in points]
        above = [b + v for b, v in zip(below, values, strict=True)]
        colour = COLOURS[severity]
        # The band between the stack below and this severity on top of it.
        outline = _steps(frame, above) + " " + " ".join(reversed(_steps(frame, below).split()))
        parts.append(
            f'<polygon fill="{colour}" fill-opacity="0.75" stroke="{colour}" '
            f'data-severity="{severity}" points="{outline}"/>'
        )
        below = above
        y = TOP + 14 + rank * 18
        parts.append(
            f'<rect x="{WIDTH - RIGHT + 12}" y="{y - 9}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{WIDTH - RIGHT + 28}" y="{y}" font-size="12">{severity} '
            f"({values[-1]})</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every value above is escaped or a number
