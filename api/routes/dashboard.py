"""The dashboard: a server-rendered page (``/dashboard``) and the JSON it refreshes from.

The page shows findings by severity and by site, devices by protocol and by vendor, the latest
changes and the running scans with their progress. It needs a token like the API: open
``/dashboard?token=<token>`` (rendered by the server at once; the script then keeps the token in
``sessionStorage`` and drops it from the address bar), or open ``/dashboard`` and paste a token in
its form. The script refreshes from ``/api/v1/dashboard`` whenever the event stream
(``/api/v1/events/stream``, for roles that may stream) says something happened, and every 30 s.
Everything is served from here: no CDN, no external font; a Content-Security-Policy with a nonce
allows only the page's own inline script and style.
"""

import secrets
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.security import HTTPAuthorizationCredentials
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from api.deps import Reader, SessionDep, authenticate, get_engine, get_settings
from api.errors import AuthenticationError
from api.routes.scans import scan_tasks
from api.schemas.dashboard import (
    CountRead,
    DashboardRead,
    RecentChangeRead,
    RunningScanRead,
    SiteFindingsRead,
)
from cybermission.auth.models import Permission
from cybermission.auth.service import Principal
from cybermission.db import session_scope, utcnow
from cybermission.events import Event, list_recent_events
from cybermission.findings.models import Severity
from cybermission.inventory.queries import (
    count_devices,
    count_devices_by_protocol,
    count_devices_by_vendor,
)
from cybermission.scans.models import ScanStatus
from cybermission.scans.placed_findings import (
    count_active_findings_by_severity,
    count_active_findings_by_site,
)
from cybermission.scans.service import list_scan_runs

router = APIRouter(prefix="/dashboard", tags=["dashboard"])
page_router = APIRouter(tags=["dashboard"])

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
SEVERITIES = [Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW, Severity.INFO]
ACTIVE_RUNS = (ScanStatus.QUEUED, ScanStatus.RUNNING)
NO_SITE = "(no site)"
UNKNOWN_VENDOR = "(unknown)"
TOP = 20
RECENT = 25


def _summary_line(event: Event) -> str:
    payload = event.payload
    if "title" in payload:
        where = f" on {payload['address']}" if payload.get("address") else ""
        return f"{payload['title']}{where}"
    what = " ".join(str(payload[k]) for k in ("vendor", "model") if payload.get(k))
    if payload.get("field"):
        return f"{what} {payload['field']}: {payload.get('old')} -> {payload.get('new')}".strip()
    if "status" in payload:
        return f"scan {payload['status']}: {', '.join(map(str, payload.get('targets', [])[:3]))}"
    return what or str(event.subject_id or "")


def build_summary(
    session: Session, caller: Principal, progress: dict[str, dict[str, int]]
) -> DashboardRead:
    """Every number of the page, limited to what the caller's organisation sees."""
    visible_to = caller.organization_id
    by_severity = count_active_findings_by_severity(session=session, visible_to=visible_to)
    sites: dict[str, dict[str, int]] = {}
    for site_name, severity, count in count_active_findings_by_site(
        session=session, visible_to=visible_to
    ):
        per = sites.setdefault(site_name or NO_SITE, {str(s): 0 for s in SEVERITIES})
        per[str(severity)] += count
    by_site = sorted(
        (SiteFindingsRead(site=name, counts=c, total=sum(c.values())) for name, c in sites.items()),
        key=lambda s: (-s.counts[Severity.CRITICAL], -s.total, s.site),
    )
    protocols = count_devices_by_protocol(session=session, visible_to=visible_to, limit=TOP)
    vendors = count_devices_by_vendor(session=session, visible_to=visible_to, limit=TOP)
    events = list_recent_events(session=session, visible_to=visible_to, limit=RECENT)
    runs = list_scan_runs(session=session, visible_to=visible_to, statuses=ACTIVE_RUNS, limit=TOP)
    running = []
    for run in runs:
        live = progress.get(run.id, {})
        total = live.get("hosts_total", run.hosts_total)
        swept = live.get("hosts_swept", 0)
        running.append(
            RunningScanRead(
                id=run.id,
                status=run.status,
                targets=run.targets[:5],
                started_at=run.started_at,
                hosts_total=total,
                hosts_swept=swept,
                hosts_live=live.get("hosts_live", run.hosts_probed),
                findings=live.get("findings", run.findings),
                percent=min(100, (100 * swept) // total) if total else 0,
            )
        )
    return DashboardRead(
        generated_at=utcnow(),
        devices_total=count_devices(session=session, visible_to=visible_to),
        findings_active=sum(by_severity.values()),
        findings_by_severity=[
            CountRead(label=str(s), count=by_severity.get(s, 0)) for s in SEVERITIES
        ],
        findings_by_site=by_site,
        devices_by_protocol=[CountRead(label=p, count=n) for p, n in protocols],
        devices_by_vendor=[CountRead(label=v or UNKNOWN_VENDOR, count=n) for v, n in vendors],
        recent_changes=[
            RecentChangeRead(
                id=e.id or 0,
                at=e.at,
                kind=str(e.kind),
                severity=e.severity,
                summary=_summary_line(e)[:200],
            )
            for e in events
        ],
        running_scans=running,
    )


def _progress(request: Request) -> dict[str, dict[str, int]]:
    return {
        run_id: {
            "hosts_total": live.hosts_total,
            "hosts_swept": live.hosts_swept,
            "hosts_live": live.hosts_live,
            "findings": live.findings,
        }
        for run_id, _organization, live in scan_tasks(request).running()
    }


@router.get("", summary="The numbers of the dashboard page, for the caller's organisation")
def get_dashboard(request: Request, session: SessionDep, caller: Reader) -> DashboardRead:
    return build_summary(session, caller, _progress(request))


@lru_cache(maxsize=1)
def _environment() -> Environment:
    # Built on first use, not at import; autoescape: every value from devices is untrusted text.
    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        auto_reload=False,
    )


def _caller(request: Request, token: str) -> Principal:
    credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=token)
    return authenticate(get_settings(request), get_engine(request), credentials)


def _render(request: Request, token: str | None, nonce: str) -> tuple[str, int]:
    summary: DashboardRead | None = None
    error: str | None = None
    status = 200
    if token:
        try:
            caller = _caller(request, token)
        except AuthenticationError as exc:
            error, status = str(exc), 401
        else:
            if caller.can(Permission.READ):
                with session_scope(get_engine(request)) as session:
                    summary = build_summary(session, caller, _progress(request))
            else:
                error, status = f"the {caller.role} role may not read the dashboard", 403
    html = (
        _environment()
        .get_template("dashboard.html")
        .render(summary=summary, error=error, nonce=nonce, severities=[str(s) for s in SEVERITIES])
    )
    return html, status


@page_router.get(
    "/dashboard",
    response_class=HTMLResponse,
    summary="The dashboard page (HTML); give the token as ?token= or in its form",
)
async def dashboard_page(
    request: Request, token: Annotated[str | None, Query(max_length=512)] = None
) -> HTMLResponse:
    nonce = secrets.token_urlsafe(16)
    html, status = await run_in_threadpool(_render, request, token, nonce)
    return HTMLResponse(
        html,
        status_code=status,
        headers={
            "Content-Security-Policy": (
                f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
                "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; "
                "frame-ancestors 'none'"
            ),
            "Cache-Control": "no-store",
            # The token may be in the address: never send it on in a Referer.
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
        },
    )
