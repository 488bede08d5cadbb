"""The coordinator's console page: the territory by sector (the exposure API's numbers, withheld
where it withholds), the trend of open findings, campaigns with their numbers now, the shared
rule packs' and family packs' uptake, and the monthly reports. Aggregates only, as the territory
API answers them: the page is built from the same functions (cybermission/territory)."""

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup

from api.console.pages import TERRITORY_PATH, render, sign_in_first, signed_in
from api.deps import SessionDep, SettingsDep
from api.routes.territory import eol_rule_ids
from cybermission.auth.models import Permission
from cybermission.db import utcnow
from cybermission.findings.advisories.family_packs import FAMILY_PACKS
from cybermission.rules.packs import RULE_PACKS
from cybermission.territory.campaigns import campaign_progress, list_campaigns
from cybermission.territory.charts import stacked_columns, svg
from cybermission.territory.exposure import SEVERITIES, exposure_report, load_territory
from cybermission.territory.report import recent_months
from cybermission.territory.trends import trend_points
from cybermission.territory.uptake import pack_uptake

router = APIRouter(include_in_schema=False)
TREND_WEEKS = 12


@router.get(TERRITORY_PATH, response_class=HTMLResponse)
def territory_page(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    user = signed_in(request, Permission.TERRITORY)
    if user is None:
        return sign_in_first()
    now = utcnow()
    threshold = settings.territory.threshold
    territory = load_territory(session, eol_rule_ids=eol_rule_ids(request, settings))
    exposure = exposure_report(territory, threshold=threshold, now=now)
    trend = trend_points(session, weeks=TREND_WEEKS, threshold=threshold, now=now)
    chart = stacked_columns(
        "Open findings by severity at each week's end (territory)",
        [(f"{p['at']:%m-%d}", p["territory"]) for p in trend],
        width=720,
    )
    campaigns = [
        (c, campaign_progress(session, c, threshold=threshold, now=now, points=2).now)
        for c in list_campaigns(session)
    ]
    return render(
        "console/territory.html",
        user=user,
        section="territory",
        exposure=exposure,
        # The territory's row first, then each sector's.
        rows=[{"sector": "territory", **exposure.territory}, *exposure.sectors],
        severities=[str(s) for s in SEVERITIES],
        # svg() escapes every text and attribute it writes.
        chart=Markup(svg(chart)),  # noqa: S704
        trend=trend,
        campaigns=campaigns,
        packs=[
            (u.pack, u.organizations_evaluating)
            for u in pack_uptake(session, RULE_PACKS, threshold=threshold)
        ],
        family_packs=[
            (u.pack, u.organizations_evaluating)
            for u in pack_uptake(session, FAMILY_PACKS, threshold=threshold)
        ],
        months=recent_months(now),
    )
