"""Console pages of sites: every site with its devices and open findings by severity (and links
to the organisation's own monthly reports), and one
site's overview with the trend of its open findings by severity, drawn on the server (SVG). The
counts are the dashboard's queries; the trend is replayed from the findings' audit trail
(``cybermission.scans.finding_trend``)."""

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, Response

from api.console.charts import ORDER, trend_svg
from api.console.pages import not_found, render, sign_in_first, signed_in
from api.deps import SessionDep
from cybermission.db import utcnow
from cybermission.errors import NotFoundError
from cybermission.findings.models import Severity
from cybermission.inventory.queries import count_devices_by_site
from cybermission.scans.finding_trend import open_findings_trend
from cybermission.scans.placed_findings import count_active_findings_by_site
from cybermission.sites.service import get_site_by_id_or_raise, list_site_zones, list_sites
from cybermission.territory.report import recent_months

router = APIRouter(prefix="/console", include_in_schema=False)

TREND_POINTS = 80
# The periods the chart offers (days; None: since the site's first finding).
PERIODS: dict[str, int | None] = {"1d": 1, "7d": 7, "30d": 30, "90d": 90, "all": None}


@router.get("/sites", response_class=HTMLResponse)
def sites_page(request: Request, session: SessionDep) -> Response:
    user = signed_in(request)
    if user is None:
        return sign_in_first()
    visible_to = user.principal.organization_id
    findings: dict[str | None, dict[Severity, int]] = {}
    for site_id, _name, severity, count in count_active_findings_by_site(
        session=session, visible_to=visible_to
    ):
        findings.setdefault(site_id, dict.fromkeys(Severity, 0))[severity] += count
    return render(
        "console/sites.html",
        user=user,
        section="sites",
        sites=list_sites(session, visible_to=visible_to),
        devices=count_devices_by_site(session=session, visible_to=visible_to),
        findings=findings,
        severities=ORDER,
        # The organisation's own monthly reports (a global user has no organisation's).
        organization_id=visible_to,
        months=recent_months(utcnow()),
    )


@router.get("/sites/{site_id}", response_class=HTMLResponse)
def site_page(
    request: Request,
    session: SessionDep,
    site_id: Annotated[str, Path(max_length=64)],
    period: Annotated[str, Query(max_length=8)] = "all",
) -> Response:
    user = signed_in(request)
    if user is None:
        return sign_in_first()
    visible_to = user.principal.organization_id
    try:
        site = get_site_by_id_or_raise(session=session, site_id=site_id, visible_to=visible_to)
    except NotFoundError:
        return not_found(user, "sites", "site")
    period = period if period in PERIODS else "all"
    days = PERIODS[period]
    now = utcnow()
    trend = open_findings_trend(
        session=session,
        site_id=site.id,
        visible_to=visible_to,
        now=now,
        since=now - timedelta(days=days) if days is not None else None,
        points=TREND_POINTS,
    )
    latest = trend[-1].counts if trend else dict.fromkeys(Severity, 0)
    return render(
        "console/site.html",
        user=user,
        section="sites",
        site=site,
        zones=list_site_zones(session=session, site_id=site.id, visible_to=visible_to),
        devices=count_devices_by_site(session=session, visible_to=visible_to).get(site.id, 0),
        latest=latest,
        trend=trend,
        chart=trend_svg(trend, title=f"Open findings of {site.name} by severity"),
        period=period,
        periods=PERIODS,
        severities=ORDER,
    )
