"""The server-drawn trend chart: stacked bands whose top edge is the total, the latest counts
said in words, an empty site said so, and the title escaped (a site's name is text)."""

from datetime import UTC, datetime, timedelta
from xml.etree import ElementTree

from api.console.charts import BOTTOM, HEIGHT, TOP, trend_svg
from cybermission.findings.models import Severity
from cybermission.scans.finding_trend import TrendPoint

T0 = datetime(2026, 12, 1, tzinfo=UTC)
SVG = "{http://www.w3.org/2000/svg}"


def _point(hours: int, **counts: int) -> TrendPoint:
    values = dict.fromkeys(Severity, 0)
    values.update({Severity(k): v for k, v in counts.items()})
    return TrendPoint(at=T0 + timedelta(hours=hours), counts=values)


def test_trend_chart_stacks_bands_up_to_the_total() -> None:
    svg = ElementTree.fromstring(
        str(trend_svg([_point(0, critical=1, high=1), _point(1, high=2)], title="N"))
    )
    bands = {b.get("data-severity"): b for b in svg.iter(f"{SVG}polygon")}
    assert list(bands) == ["critical", "high", "medium", "low", "info"]
    assert svg.get("data-latest") == "0 critical, 2 high, 0 medium, 0 low, 0 info"

    def ys(severity: str) -> list[float]:
        return [float(xy.split(",")[1]) for xy in (bands[severity].get("points") or "").split()]

    # The y axis tops at the highest total (2); the high band's top edge is the total, 2 both
    # times, so it is one flat line at the top of the plot.
    plot_top = float(TOP)
    assert ys("high")[:3] == [plot_top, plot_top, plot_top]
    # The critical band sits on the bottom line and rises to half the height while it counts one.
    bottom = float(HEIGHT - BOTTOM)
    assert max(ys("critical")) == bottom
    assert min(ys("critical")) == (plot_top + bottom) / 2


def test_trend_chart_of_a_site_without_findings_says_so() -> None:
    svg = str(trend_svg([], title="Empty"))
    assert "no finding on this site yet" in svg
    assert "polygon" not in svg


def test_trend_chart_escapes_the_title() -> None:
    svg = str(trend_svg([_point(0, low=1)], title='<script>alert("x")</script> & co'))
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg
    ElementTree.fromstring(svg)  # still well-formed
