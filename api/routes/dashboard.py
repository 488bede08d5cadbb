"""The dashboard: a server-rendered page (``/dashboard``) and the JSON it refreshes from.

The page shows findings by severity and by site, devices by protocol and by vendor, the latest
changes and the running scans with their progress. Sign-in is a form (POST ``/dashboard/session``)
taking an API token: the token is checked like any bearer token, and the browser gets a server-side
session in a cookie (HttpOnly, SameSite=Strict, Secure over https; ``cybermission.auth.sessions``),
short-lived and revoked by the sign-out button. The token is never in an address:
``/dashboard?token=`` is not accepted and redirects to the form. The script refreshes from
``/api/v1/dashboard`` (the cookie authenticates read-only requests) whenever the event stream
(``/api/v1/events/stream``, for roles that may stream) says something happened, and every 30 s.
Everything is served from here: no CDN, no external font; a Content-Security-Policy with a nonce
allows only the page's own inline script and style.
"""

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from api.console.pages import TERRITORY_PATH, read_form, render, same_origin, see_other
from api.deps import (
    SESSION_COOKIE,
    Reader,
    SessionDep,
    admin_token_of,
    authenticate,
    get_engine,
    get_settings,
)
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
from cybermission.auth.sessions import close_browser_session, open_browser_session
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

SEVERITIES = [Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW, Severity.INFO]
ACTIVE_RUNS = (ScanStatus.QUEUED, ScanStatus.RUNNING)
NO_SITE = "(no site)"
UNKNOWN_VENDOR = "(unknown)"
TOP = 20
RECENT = 25
DASHBOARD_PATH = "/dashboard"
SESSION_PATH = "/dashboard/session"
SIGN_OUT_PATH = "/dashboard/sign-out"
TOKEN_MAX_CHARS = 512
FORM_MAX_BYTES = 4096


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
    for _site_id, site_name, severity, count in count_active_findings_by_site(
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


def _page(
    *, summary: DashboardRead | None = None, error: str | None = None, status: int = 200
) -> HTMLResponse:
    return render(
        "dashboard.html",
        status=status,
        summary=summary,
        error=error,
        severities=[str(s) for s in SEVERITIES],
    )


def _see_dashboard() -> RedirectResponse:
    # Post/Redirect/Get, and the address holds no secret.
    return see_other(DASHBOARD_PATH)


def _render_for_session(request: Request, secret: str) -> tuple[DashboardRead | None, str | None]:
    engine = get_engine(request)
    try:
        # The same path as every API call: the session cookie, checked by api.deps.authenticate.
        caller = authenticate(request, get_settings(request), engine, None, secret)
    except AuthenticationError:
        return None, "your session has ended: sign in again"
    if not caller.can(Permission.READ):
        if caller.can(Permission.TERRITORY):
            return None, None  # the coordinator: its page is the territory's
        return None, f"the {caller.role} role may not read the dashboard"
    with session_scope(engine) as session:
        return build_summary(session, caller, _progress(request)), None


@page_router.get(
    DASHBOARD_PATH,
    response_class=HTMLResponse,
    summary="The dashboard page (HTML): the numbers when signed in, else the sign-in form",
)
async def dashboard_page(request: Request) -> Response:
    if "token" in request.query_params:
        # The old `/dashboard?token=` link: never used to sign in (an address ends up in access
        # logs, history and Referer headers); back to the form, without the query.
        return _see_dashboard()
    secret = request.cookies.get(SESSION_COOKIE)
    if not secret:
        return _page()
    summary, error = await run_in_threadpool(_render_for_session, request, secret)
    if summary is None and error is None:
        return see_other(TERRITORY_PATH)
    page = _page(summary=summary, error=error)
    if summary is None:
        _clear_cookie(page, request)
    return page


async def _form_token(request: Request) -> str | None:
    """The ``token`` field of the sign-in form (bounded body)."""
    fields = await read_form(request, max_bytes=FORM_MAX_BYTES, max_fields=8)
    values = (fields or {}).get("token", [])
    token = values[0].strip() if len(values) == 1 else ""
    return token if 0 < len(token) <= TOKEN_MAX_CHARS else None


def _sign_in(request: Request, token: str) -> tuple[str | None, str | None, int]:
    """(session secret, error, status) for a token typed into the form."""
    settings, engine = get_settings(request), get_engine(request)
    credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=token)
    try:
        # The same path as every API call: a bearer token, checked by api.deps.authenticate.
        caller = authenticate(request, settings, engine, credentials, None)
    except AuthenticationError as exc:
        return None, str(exc), 401
    if not (caller.can(Permission.READ) or caller.can(Permission.TERRITORY)):
        return None, f"the {caller.role} role may not read the dashboard", 403
    with session_scope(engine) as session:
        issued = open_browser_session(
            session, caller, ttl_s=settings.session_ttl_s, admin_token=admin_token_of(settings)
        )
    return issued.secret, None, 303


_FORM = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["token"],
                    "properties": {"token": {"type": "string", "maxLength": TOKEN_MAX_CHARS}},
                }
            }
        },
    }
}


@page_router.post(
    SESSION_PATH,
    response_class=HTMLResponse,
    status_code=303,
    summary="Sign in to the dashboard with an API token (form); sets the session cookie",
    openapi_extra=_FORM,
    responses={
        303: {"description": "Signed in: the session cookie is set; on to /dashboard"},
        401: {"description": "The token was refused: the form again, with why"},
        403: {"description": "The role may not read, or the form was posted from another site"},
        422: {"description": "No token in the form"},
    },
)
async def sign_in(request: Request) -> Response:
    if not same_origin(request):
        return _page(error="sign in from this site's own dashboard page", status=403)
    token = await _form_token(request)
    if token is None:
        return _page(error="enter an API token", status=422)
    secret, error, status = await run_in_threadpool(_sign_in, request, token)
    if secret is None:
        return _page(error=error, status=status)
    response = _see_dashboard()
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        max_age=int(get_settings(request).session_ttl_s),
        path="/",
        # Script cannot read it, no other site's request carries it, and over https only
        # when the service is reached over https (uvicorn behind TLS or --proxy-headers).
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


def _clear_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(
        SESSION_COOKIE,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def _sign_out(request: Request, secret: str) -> None:
    with session_scope(get_engine(request)) as session:
        close_browser_session(session, secret)


@page_router.post(
    SIGN_OUT_PATH,
    response_class=HTMLResponse,
    status_code=303,
    summary="Sign out of the dashboard: the session is revoked on the server, the cookie cleared",
    responses={303: {"description": "Signed out; on to /dashboard"}},
)
async def sign_out(request: Request) -> Response:
    secret = request.cookies.get(SESSION_COOKIE)
    if secret:
        await run_in_threadpool(_sign_out, request, secret)
    response = _see_dashboard()
    _clear_cookie(response, request)
    return response
