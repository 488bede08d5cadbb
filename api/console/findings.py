"""Console page of findings: filtered, sorted (by score first), paged; bulk triage for the roles
that may triage (acknowledge, accept the risk until a date, false positive), each with a reason.

The list is the API's (``cybermission.scans.placed_findings``); triage goes through the audited
lifecycle (``cybermission.findings.service.transition_finding``). A bulk triage is one
transaction: one finding that may not move (another organisation's, or a transition the
lifecycle refuses) moves none of them, and the page says which and why.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import Engine
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from api.console.pages import (
    ConsoleUser,
    Form,
    places,
    post_form,
    render,
    sign_in_first,
    signed_in,
)
from api.deps import SessionDep, get_engine
from cybermission.auth.models import Permission
from cybermission.db import session_scope, utcnow
from cybermission.errors import ConflictError, ValidationError
from cybermission.findings.models import FindingStatus, Severity
from cybermission.findings.service import transition_finding
from cybermission.scans.placed_findings import (
    FindingFilters,
    FindingSort,
    finding_places,
    get_placed_finding_or_raise,
    list_placed_findings,
    place_findings,
)

router = APIRouter(prefix="/console", include_in_schema=False)

PAGE_SIZE = 50
FINDINGS_PATH = "/console/findings"
MAX_BULK = 200
REASON_MAX_CHARS = 2000
TEXT_MAX_CHARS = 200
# What the triage form offers, as the lifecycle's words.
ACTIONS: Mapping[str, FindingStatus] = {
    "acknowledge": FindingStatus.ACKNOWLEDGED,
    "accept": FindingStatus.RISK_ACCEPTED,
    "false-positive": FindingStatus.FALSE_POSITIVE,
}
SORTS: Mapping[str, str] = {
    FindingSort.SCORE_DESC: "score, highest first",
    FindingSort.SCORE: "score, lowest first",
    FindingSort.SEVERITY_DESC: "severity, worst first",
    FindingSort.LAST_SEEN_DESC: "last seen, newest first",
    FindingSort.FIRST_SEEN_DESC: "first seen, newest first",
    FindingSort.FIRST_SEEN: "first seen, oldest first",
}
_SINGLE = ("rule_id", "device_id", "site_id", "zone_id", "protocol", "min_score", "sort", "cursor")


@dataclass
class ListRequest:
    """A findings page as asked for in its address: the filters, the sort, the cursor, and the
    raw parameters (to keep them in links); ``error`` names a parameter that was not understood."""

    filters: FindingFilters
    sort: FindingSort
    cursor: str | None
    params: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def _first(query: Mapping[str, Sequence[str]], key: str) -> str | None:
    values = [v.strip() for v in query.get(key, ()) if v.strip()]
    return values[0][:TEXT_MAX_CHARS] if values else None


def _score(text: str | None) -> float | None:
    try:
        value = float(text) if text else None
    except ValueError:
        return None
    return value if value is not None and 0 <= value <= 10 else None


def parse_list_request(query: Mapping[str, Sequence[str]]) -> ListRequest:
    """The page's parameters (a form's empty fields mean "any")."""
    params: dict[str, Any] = {key: _first(query, key) for key in _SINGLE}
    params["severity"] = [v for v in query.get("severity", ()) if v][:5]
    params["status"] = [v for v in query.get("status", ()) if v][:5]
    error = None
    try:
        severity = [Severity(v) for v in params["severity"]]
    except ValueError:
        severity, error = [], f"severity: expected any of {', '.join(Severity)}"
    try:
        status = [FindingStatus(v) for v in params["status"]]
    except ValueError:
        status, error = [], f"status: expected any of {', '.join(FindingStatus)}"
    min_score = _score(params["min_score"])
    if params["min_score"] and min_score is None:
        error = "min_score: expected a number from 0 to 10"
    try:
        sort = FindingSort(params["sort"] or FindingSort.SCORE_DESC)
    except ValueError:
        sort, error = FindingSort.SCORE_DESC, f"sort: expected one of {', '.join(FindingSort)}"
    filters = FindingFilters(
        severity=severity or None,
        status=status or None,
        rule_id=params["rule_id"],
        device_id=params["device_id"],
        site_id=params["site_id"],
        zone_id=params["zone_id"],
        protocol=params["protocol"],
        min_score=min_score,
    )
    return ListRequest(filters, sort, params["cursor"], params, error)


def findings_view(
    session: Session,
    user: ConsoleUser,
    asked: ListRequest,
    *,
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    """The findings page for ``asked``, with a notice or an error above the list."""
    visible_to = user.principal.organization_id
    error = error or asked.error
    rows = []
    next_cursor = None
    if asked.error is None:
        try:
            found, next_cursor = list_placed_findings(
                session=session,
                visible_to=visible_to,
                filters=asked.filters,
                sort=asked.sort,
                cursor=asked.cursor,
                limit=PAGE_SIZE,
            )
            rows = place_findings(session=session, findings=found)
        except ValidationError as exc:
            error = str(exc)
    sites, zones = places(session, user)
    links = {k: v for k, v in asked.params.items() if k != "cursor"}
    return render(
        "console/findings.html",
        status=422 if asked.error and status == 200 else status,
        user=user,
        section="findings",
        notice=notice,
        error=error,
        rows=rows,
        next_cursor=next_cursor,
        paged=asked.cursor is not None,
        params=asked.params,
        links=links,
        back=urlencode([(k, v) for k, vs in links.items() for v in _listed(vs)]),
        sites=sites,
        zones=zones,
        site_names={s.id: s.name for s in sites},
        severities=list(Severity),
        statuses=list(FindingStatus),
        sorts=SORTS,
        actions=ACTIONS,
        can_triage=user.can(Permission.TRIAGE),
        today=utcnow().date().isoformat(),
    )


def _listed(value: Any) -> list[Any]:
    if value in (None, ""):
        return []
    return list(value) if isinstance(value, list) else [value]


@router.get("/findings", response_class=HTMLResponse)
def findings_page(request: Request, session: SessionDep) -> Response:
    user = signed_in(request)
    if user is None:
        return sign_in_first()
    query: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        query.setdefault(key, []).append(value)
    asked = parse_list_request(query)
    triaged = _first(query, "triaged")
    notice = None
    if triaged and triaged.isdigit():
        notice = f"{triaged} finding{'s' if triaged != '1' else ''} triaged"
    return findings_view(session, user, asked, notice=notice)


@dataclass(frozen=True, slots=True)
class Triage:
    """A bulk triage as the form posted it, checked."""

    finding_ids: list[str]
    to: FindingStatus
    reason: str
    until: datetime | None


def parse_triage(form: Mapping[str, Sequence[str]]) -> Triage:
    """Raises :class:`ValidationError` naming the field that is wrong."""
    ids = list(dict.fromkeys(v for v in form.get("finding_id", ()) if v))
    if not ids:
        raise ValidationError("finding_id: tick at least one finding")
    if len(ids) > MAX_BULK or any(len(i) > 64 for i in ids):
        raise ValidationError(f"finding_id: at most {MAX_BULK} findings at once")
    action = _first(form, "action") or ""
    if action not in ACTIONS:
        raise ValidationError(f"action: expected one of {', '.join(ACTIONS)}")
    reasons = [v.strip() for v in form.get("reason", ()) if v.strip()]
    reason = reasons[0] if reasons else ""
    if not reason:
        raise ValidationError("reason: say why (it is kept in the finding's audit trail)")
    if len(reason) > REASON_MAX_CHARS:
        raise ValidationError(f"reason: at most {REASON_MAX_CHARS} characters")
    until = None
    if ACTIONS[action] is FindingStatus.RISK_ACCEPTED:
        day = _first(form, "until")
        if day is None:
            raise ValidationError("until: a risk acceptance needs the date it ends")
        try:
            # The acceptance ends at the start of that day (UTC), when the finding reopens.
            until = datetime.combine(date.fromisoformat(day), time(0), tzinfo=UTC)
        except ValueError as exc:
            raise ValidationError(f"until: expected a date as YYYY-MM-DD, got {day!r}") from exc
    return Triage(ids, ACTIONS[action], reason, until)


def apply_triage(engine: Engine, user: ConsoleUser, triage: Triage) -> int:
    """Every finding moved in one transaction (none if one cannot move); how many moved."""
    with session_scope(engine) as session:
        place_of = finding_places(session=session)
        now = utcnow()
        for finding_id in triage.finding_ids:
            finding = get_placed_finding_or_raise(
                session=session, finding_id=finding_id, visible_to=user.principal.organization_id
            )
            try:
                transition_finding(
                    session,
                    finding_id=finding.id,
                    to=triage.to,
                    actor=user.principal.name,
                    reason=triage.reason,
                    until=triage.until,
                    now=now,
                    place_of=place_of,
                )
            except ConflictError as exc:
                raise ConflictError(f"{finding.title} ({finding.id}): {exc}") from exc
    return len(triage.finding_ids)


def _asked_before(form: Form) -> ListRequest:
    """The list the triage form was posted from (its filters ride in the ``back`` field)."""
    return parse_list_request(parse_qs(_first(form, "back") or "", max_num_fields=50))


def _findings_again(
    session: Session, user: ConsoleUser, form: Form, error: str, status: int
) -> HTMLResponse:
    return findings_view(session, user, _asked_before(form), error=error, status=status)


@router.post("/findings/triage", response_class=HTMLResponse)
async def triage_findings(request: Request) -> Response:
    engine = get_engine(request)

    async def triage(user: ConsoleUser, form: Form) -> str:
        moved = await run_in_threadpool(apply_triage, engine, user, parse_triage(form))
        links = {k: v for k, v in _asked_before(form).params.items() if k != "cursor"}
        pairs = [(k, v) for k, vs in links.items() for v in _listed(vs)]
        return f"{FINDINGS_PATH}?{urlencode([*pairs, ('triaged', str(moved))])}"

    return await post_form(request, permission=Permission.TRIAGE, act=triage, again=_findings_again)
