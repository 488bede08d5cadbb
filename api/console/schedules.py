"""Console pages of schedules: every schedule with its next due time, and one schedule with the
scheduler's decisions (started, waiting for a window, skipped and why) and who changed it, and a
run-now button for the roles that may schedule. The reads are the API's
(``cybermission.scans.schedules``), and so is run-now (``api.routes.schedules.run_now``)."""

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session

from api.console.pages import (
    ConsoleUser,
    Form,
    not_found,
    post_form,
    redraw,
    render,
    sign_in_first,
    signed_in,
)
from api.deps import SessionDep
from api.routes.schedules import run_now
from cybermission.auth.models import Permission
from cybermission.errors import NotFoundError
from cybermission.scans.schedules import (
    RunOutcome,
    get_schedule_or_raise,
    list_schedule_audit,
    list_schedule_runs,
    list_schedules,
)
from cybermission.sites.service import list_sites

router = APIRouter(prefix="/console", include_in_schema=False)

DECISIONS = 200
ScheduleId = Annotated[str, Path(max_length=64)]


@router.get("/schedules", response_class=HTMLResponse)
def schedules_page(request: Request, session: SessionDep) -> Response:
    user = signed_in(request)
    if user is None:
        return sign_in_first()
    visible_to = user.principal.organization_id
    return render(
        "console/schedules.html",
        user=user,
        section="schedules",
        schedules=list_schedules(session, visible_to=visible_to),
        site_names={s.id: s.name for s in list_sites(session, visible_to=visible_to)},
    )


def schedule_view(
    session: Session,
    user: ConsoleUser,
    schedule_id: str,
    *,
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    """One schedule's page, with a notice or an error above it."""
    visible_to = user.principal.organization_id
    try:
        schedule = get_schedule_or_raise(session, schedule_id, visible_to=visible_to)
    except NotFoundError:
        return not_found(user, "schedules", "schedule")
    return render(
        "console/schedule.html",
        status=status,
        user=user,
        section="schedules",
        notice=notice,
        error=error,
        schedule=schedule,
        decisions=list_schedule_runs(session, schedule_id=schedule.id, limit=DECISIONS),
        audit=list_schedule_audit(session, schedule_id=schedule.id, limit=DECISIONS),
        site_names={s.id: s.name for s in list_sites(session, visible_to=visible_to)},
        can_run=user.can(Permission.SCHEDULE),
    )


@router.get("/schedules/{schedule_id}", response_class=HTMLResponse)
def schedule_page(
    request: Request,
    session: SessionDep,
    schedule_id: ScheduleId,
    ran: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    user = signed_in(request)
    if user is None:
        return sign_in_first()
    # The run-now form's outcome, as the scheduler decided it (its row is the newest decision).
    notice = f"run now: {ran.replace('_', ' ')}" if ran in set(RunOutcome) else None
    return schedule_view(session, user, schedule_id, notice=notice)


@router.post("/schedules/{schedule_id}/run", response_class=HTMLResponse)
async def run_now_form(request: Request, schedule_id: ScheduleId) -> Response:
    """Run the schedule now (roles with ``schedule``): the API's run-now, window waived,
    blackouts and overlap not."""

    async def run(user: ConsoleUser, form: Form) -> str:
        decision = await run_now(request, user.principal, schedule_id)
        return f"/console/schedules/{schedule_id}?{urlencode({'ran': decision.outcome})}"

    again = redraw(schedule_view, schedule_id)
    return await post_form(
        request, permission=Permission.SCHEDULE, act=run, again=again, max_fields=4
    )
