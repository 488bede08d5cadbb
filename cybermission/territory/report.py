"""The monthly report, as HTML and as PDF: exposure by sector, the exposure trend, top
findings, campaign progress, devices by sector and protocol. Of the territory for the
coordinator, or of one organisation for itself (the same code over an organisation's view).

Every number comes from the functions the territory API answers with (exposure.py, trends.py,
campaigns.py) or goes through the same withholding rule (privacy.py): the territory's report
holds sector and territory aggregates only, never an organisation's own row, device, address or
name; an organisation's report counts its own devices only (its campaigns: those it was told of).
"""

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from pathlib import Path
from typing import Any, Final

import jinja2
from markupsafe import Markup
from sqlalchemy import case, func
from sqlmodel import Session, col, select

from cybermission.errors import ValidationError
from cybermission.findings.models import Finding
from cybermission.findings.service import ACTIVE_STATUSES
from cybermission.inventory.models import Device
from cybermission.territory.campaigns import (
    campaign_progress,
    list_campaigns,
    list_organization_campaigns,
)
from cybermission.territory.charts import Chart, horizontal_bars, stacked_columns, svg
from cybermission.territory.exposure import (
    DEVICES,
    EOL,
    KEV,
    OPEN,
    PROTOCOLS,
    TERRITORY,
    ExposureReport,
    Parts,
    Territory,
    View,
    add_parts,
    exposure_report,
    load_territory,
    view_of,
)
from cybermission.territory.pdf import A4_HEIGHT, Document, Page
from cybermission.territory.privacy import WITHHELD, Shown, disclose
from cybermission.territory.shares import disclosed_devices
from cybermission.territory.trends import trend_points

TREND_WEEKS: Final = 13
TOP_FINDINGS: Final = 10
_TEMPLATE: Final = Path(__file__).with_name("report.html")
_RULE: Final = "rule/"


@dataclass(frozen=True, slots=True)
class TopFinding:
    rule_id: str
    title: str
    active: int  # shown only when the withholding rule lets it


@dataclass(frozen=True, slots=True)
class CampaignLine:
    title: str
    kind: str
    subject: str
    opened_at: datetime
    closed_at: datetime | None
    numbers: dict[str, Shown]


@dataclass(frozen=True, slots=True)
class TerritoryReport:
    subject: str  # "territory", or the organisation's name
    month: str  # YYYY-MM
    period_start: datetime
    period_end: datetime
    generated_at: datetime
    exposure: ExposureReport
    trend: list[dict[str, Any]]
    top_findings: list[TopFinding]
    campaigns: list[CampaignLine]

    @property
    def threshold(self) -> int:
        return self.exposure.threshold

    @property
    def is_territory(self) -> bool:
        return self.subject == TERRITORY

    @property
    def title(self) -> str:
        what = "Territory report" if self.is_territory else f"Report of {self.subject}"
        return f"{what} {self.month}"

    @property
    def last_day(self) -> date:
        return (self.period_end - timedelta(days=1)).date()


def parse_month(text: str) -> date:
    """``YYYY-MM`` to the month's first day (ValidationError otherwise). Years run 1970-9998: the
    report reaches 13 weeks back and one month forward, which must stay inside ``datetime``."""
    year, _, month = text.partition("-")
    if len(year) != 4 or len(month) != 2 or not (year + month).isdigit():
        raise ValidationError(f"month: {text!r} is not YYYY-MM")
    if not 1970 <= int(year) <= 9998:
        raise ValidationError(f"month: {text!r} is outside the years 1970-9998")
    try:
        return date(int(year), int(month), 1)
    except ValueError as exc:
        raise ValidationError(f"month: {text!r} is not YYYY-MM ({exc})") from exc


def recent_months(now: datetime) -> list[str]:
    """The months a page offers reports of: this one (so far), then the one before."""
    this_month = date(now.year, now.month, 1)
    return [f"{m:%Y-%m}" for m in (this_month, (this_month - timedelta(days=1)).replace(day=1))]


def month_bounds(month: date) -> tuple[datetime, datetime]:
    start = datetime.combine(month, time(), tzinfo=UTC)
    days = calendar.monthrange(month.year, month.month)[1]
    return start, start + timedelta(days=days)


def _top_findings(session: Session, territory: Territory, threshold: int) -> list[TopFinding]:
    """Rules with the most active findings over the territory's members, each count under the
    rule; a withheld count is left out (its rank would tell about its size)."""
    shared = case((disclosed_devices(territory.disclosure), 1), else_=0)
    org = col(Device.organization_id)
    rows = session.exec(
        select(Finding.rule_id, org, shared, func.count())
        .select_from(Finding)
        .join(Device, col(Device.id) == col(Finding.device_id))
        .where(
            col(Finding.status).in_(ACTIVE_STATUSES),
            org.in_(sorted(m.id for m in territory.members)),
        )
        .group_by(col(Finding.rule_id), org, shared)
    ).all()
    parts: Parts = {}
    by_rule: dict[str, list[tuple[str | None, int, int]]] = {}
    for rule_id, organization_id, flag, count in rows:
        by_rule.setdefault(rule_id, []).append((organization_id, flag, count))
    for rule_id, grouped in by_rule.items():
        add_parts(parts, _RULE + rule_id, grouped)
    counted = Territory(members=territory.members, disclosure=territory.disclosure, parts=parts)
    shown: list[tuple[str, int]] = []
    for rule_id in by_rule:
        value = disclose(counted.cell(_RULE + rule_id, territory.members), threshold=threshold)
        if value != WITHHELD:
            shown.append((rule_id, int(value)))
    shown.sort(key=lambda item: (-item[1], item[0]))
    titles = dict(
        session.exec(
            select(Finding.rule_id, func.max(Finding.title))
            .where(col(Finding.rule_id).in_([r for r, _ in shown[:TOP_FINDINGS]]))
            .group_by(col(Finding.rule_id))
        ).all()
    )
    return [TopFinding(r, str(titles.get(r, r)), n) for r, n in shown[:TOP_FINDINGS]]


def build_territory_report(
    session: Session,
    *,
    month: date,
    threshold: int,
    eol_rule_ids: frozenset[str],
    now: datetime,
    view: View | None = None,
) -> TerritoryReport:
    """The report of ``month`` (of the territory by default, else of the view's organisation):
    trends up to the month's end (or now, for the current month); exposure, top findings and
    campaigns as they are now."""
    start, end = month_bounds(month)
    seen = view_of(session, view)
    territory = load_territory(session, eol_rule_ids=eol_rule_ids, view=seen)
    exposure = exposure_report(territory, threshold=threshold, now=now)
    trend = trend_points(
        session, weeks=TREND_WEEKS, threshold=threshold, now=min(end, now), view=seen
    )
    if seen.is_territory:
        chosen = list_campaigns(session)
    else:
        chosen = [
            c.campaign
            for c in list_organization_campaigns(session, organization_id=seen.members[0].id)
        ]
    campaigns = []
    for campaign in chosen:
        progress = campaign_progress(
            session, campaign, threshold=threshold, now=now, points=2, view=seen
        )
        campaigns.append(
            CampaignLine(
                title=campaign.title,
                kind=str(campaign.kind),
                subject=campaign.subject,
                opened_at=campaign.opened_at,
                closed_at=campaign.closed_at,
                numbers=dict(progress.now),
            )
        )
    return TerritoryReport(
        subject=seen.subject,
        month=f"{month:%Y-%m}",
        period_start=start,
        period_end=end,
        generated_at=now,
        exposure=exposure,
        trend=trend,
        top_findings=_top_findings(session, territory, threshold),
        campaigns=campaigns,
    )


def report_charts(report: TerritoryReport, *, width: float) -> list[Chart]:
    """The report's charts, in order: trend, devices by sector, devices by protocol, campaigns."""
    trend = stacked_columns(
        f"Open findings by severity at each week's end ({report.subject})",
        [(f"{p['at']:%m-%d}", p["territory"]) for p in report.trend],
        width=width,
    )
    sectors = horizontal_bars(
        "Devices by sector",
        [(str(s["sector"]), s["metrics"][DEVICES]) for s in report.exposure.sectors],
        width=width,
    )
    protocols = report.exposure.territory["metrics"][PROTOCOLS]
    by_protocol = horizontal_bars(
        f"Devices with an open service, by protocol ({report.subject})",
        sorted(protocols.items()),
        width=width,
    )
    campaigns = horizontal_bars(
        "Campaigns: findings still active",
        [(c.title, c.numbers.get("findings_active", WITHHELD)) for c in report.campaigns],
        width=width,
    )
    return [trend, sectors, by_protocol, campaigns]


def _shown(value: object) -> str:
    return WITHHELD if value == WITHHELD else str(value)


def _sector_rows(report: TerritoryReport) -> list[list[str]]:
    rows = []
    # An organisation's report: its own row (its sector's row would repeat it).
    sectors = report.exposure.sectors if report.is_territory else []
    for entry in [{"sector": report.subject, **report.exposure.territory}, *sectors]:
        metrics = entry["metrics"]
        rows.append(
            [
                str(entry["sector"]),
                str(entry["organizations"]),
                _shown(metrics[DEVICES]),
                _shown(metrics[OPEN]["critical"]),
                _shown(metrics[OPEN]["high"]),
                _shown(metrics[EOL]),
                _shown(metrics[KEV]),
            ]
        )
    return rows


SECTOR_HEADER: Final = ["sector", "orgs", "devices", "critical", "high", "past EOL", "KEV"]
CAMPAIGN_HEADER: Final = ["campaign", "orgs", "devices", "active", "resolved"]


def _campaign_rows(report: TerritoryReport) -> list[list[str]]:
    keys = ("organizations_affected", "devices_affected", "findings_active", "findings_resolved")
    return [
        [c.title, *(_shown(c.numbers.get(k, WITHHELD)) for k in keys)] for c in report.campaigns
    ]


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_TEMPLATE.parent)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


def _scope_line(report: TerritoryReport) -> str:
    if report.is_territory:
        return (
            "Aggregates only: by sector and over the territory. A number that fewer than "
            f"{report.threshold} organisations stand behind is withheld."
        )
    return (
        f"{report.subject}'s own devices and findings, and the campaigns it was told of "
        "(numbers of its devices only)."
    )


def render_html(report: TerritoryReport) -> str:
    charts = report_charts(report, width=640)
    return (
        _environment()
        .get_template(_TEMPLATE.name)
        .render(
            report=report,
            scope_line=_scope_line(report),
            sector_header=SECTOR_HEADER,
            sector_rows=_sector_rows(report),
            campaign_header=CAMPAIGN_HEADER,
            campaign_rows=_campaign_rows(report),
            # svg() escapes every text and attribute it writes (titles come from people).
            charts=[(c.title, Markup(svg(c))) for c in charts],  # noqa: S704
        )
    )


_MARGIN: Final = 48.0


class _Writer:
    """Lays blocks down the pages, starting a new page when a block does not fit."""

    def __init__(self, document: Document) -> None:
        self.document = document
        self.page: Page = document.new_page()
        self.y = A4_HEIGHT - _MARGIN

    def room(self, height: float) -> None:
        if self.y - height < _MARGIN:
            self.page = self.document.new_page()
            self.y = A4_HEIGHT - _MARGIN

    def heading(self, text: str, size: float = 13) -> None:
        self.room(size + 24)
        self.y -= size + 10
        self.page.text(_MARGIN, self.y, text, size=size, bold=True)
        self.y -= 6

    def line(self, text: str, size: float = 9) -> None:
        self.room(size + 4)
        self.y -= size + 4
        self.page.text(_MARGIN, self.y, text, size=size)

    def table(
        self, header: list[str], rows: list[list[str]], widths: list[float] | None = None
    ) -> None:
        widths = widths or [150.0] + [55.0] * (len(header) - 1)
        for index, row in enumerate([header, *rows]):
            self.room(14)
            self.y -= 13
            x = _MARGIN
            for width, cell in zip(widths, row, strict=True):
                # Clipped to its column (Helvetica averages about half the size per glyph).
                self.page.text(x, self.y, cell[: int(width / 4.4)], size=8.5, bold=index == 0)
                x += width

    def chart(self, chart: Chart) -> None:
        self.heading(chart.title, size=10)
        self.room(chart.height)
        top = self.y
        for r in chart.rects:
            self.page.rect(_MARGIN + r.x, top - r.y - r.height, r.width, r.height, r.colour)
        for label in chart.labels:
            self.page.text(
                _MARGIN + label.x, top - label.y, label.text, size=label.size, colour=label.colour
            )
        self.y = top - chart.height


def render_pdf(report: TerritoryReport) -> bytes:
    document = Document(title=report.title)
    out = _Writer(document)
    out.heading(report.title, size=18)
    out.line(
        f"Period {report.period_start:%Y-%m-%d} to {report.last_day:%Y-%m-%d}; "
        f"generated {report.generated_at:%Y-%m-%d %H:%M} UTC"
    )
    out.line(_scope_line(report))
    out.heading("Exposure by sector (now)")
    out.table(SECTOR_HEADER, _sector_rows(report))
    charts = report_charts(report, width=A4_WIDTH_USABLE)
    out.chart(charts[0])
    out.heading(f"Top findings ({report.subject})")
    if report.top_findings:
        out.table(
            ["rule", "title", "active"],
            [[t.rule_id, t.title, str(t.active)] for t in report.top_findings],
            widths=[150.0, 260.0, 50.0],
        )
    else:
        out.line("none shown")
    out.chart(charts[1])
    out.chart(charts[2])
    out.heading("Campaigns")
    if report.campaigns:
        out.table(CAMPAIGN_HEADER, _campaign_rows(report))
    else:
        out.line("no campaign")
    out.chart(charts[3])
    return document.render()


A4_WIDTH_USABLE: Final = 595.0 - 2 * _MARGIN
