"""Console pages of schedules: every schedule with its next due time, and one schedule with the
scheduler's decisions (started, waiting for a window, skipped and why) and who changed it. The
reads are the API's (``cybermission.scans.schedules``)."""

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, Response

from api.console.pages import not_found, render, sign_in_first, signed_in
from api.deps import SessionDep
from cybermission.errors import NotFoundError
from cybermission.scans.schedules import (
    get_schedule_or_raise,
    list_schedule_audit,
    list_schedule_runs,
    list_schedules,
)
from cybermission.sites.service import list_sites

router = APIRouter(prefix="/console", include_in_schema=False)

DECISIONS = 200


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


@router.get("/schedules/{schedule_id}", response_class=HTMLResponse)
def schedule_page(
    request: Request, session: SessionDep, schedule_id: Annotated[str, Path(max_length=64)]
) -> Response:
    user = signed_in(request)
    if user is None:
        return sign_in_first()
    visible_to = user.principal.organization_id
    try:
        schedule = get_schedule_or_raise(session, schedule_id, visible_to=visible_to)
    except NotFoundError:
        return not_found(user, "schedules", "schedule")
    return render(
        "console/schedule.html",
        user=user,
        section="schedules",
        schedule=schedule,
        decisions=list_schedule_runs(session, schedule_id=schedule.id, limit=DECISIONS),
        audit=list_schedule_audit(session, schedule_id=schedule.id, limit=DECISIONS),
        site_names={s.id: s.name for s in list_sites(session, visible_to=visible_to)},
    )
