"""Console pages of scans: the recent runs, and one run (its counts, what it sent, its errors)
with its progress live from the event stream while it runs, and a cancel button for the roles
that may scan. The reads are the API's (``cybermission.scans.service``), and so is the cancel
(``api.routes.scans.cancel_run``); the live counters come from this process's scan tasks."""

from typing import Annotated

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
from api.routes.scans import cancel_run, scan_tasks
from cybermission.auth.models import Permission
from cybermission.errors import NotFoundError
from cybermission.events import last_event_id
from cybermission.scans.models import ScanStatus
from cybermission.scans.service import get_scan_run_or_raise, list_scan_runs

router = APIRouter(prefix="/console", include_in_schema=False)

RECENT = 100
RunId = Annotated[str, Path(max_length=64)]


@router.get("/scans", response_class=HTMLResponse)
def scans_page(
    request: Request,
    session: SessionDep,
    status: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:
    user = signed_in(request)
    if user is None:
        return sign_in_first()
    wanted = status if status in set(ScanStatus) else None
    runs = list_scan_runs(
        session=session,
        visible_to=user.principal.organization_id,
        statuses=[ScanStatus(wanted)] if wanted else None,
        limit=RECENT,
    )
    live = {run_id: progress for run_id, _org, progress in scan_tasks(request).running()}
    return render(
        "console/scans.html",
        user=user,
        section="scans",
        runs=runs,
        live=live,
        wanted=wanted,
        statuses=list(ScanStatus),
    )


# What the page says after its cancel form (``?cancel=``).
CANCEL_NOTICES = {
    "done": "scan cancelled",
    "asked": "cancel recorded: the process running the scan stops at its next heartbeat",
}


def scan_view(
    session: Session,
    user: ConsoleUser,
    request: Request,
    scan_run_id: str,
    *,
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    """One run's page, with a notice or an error above it."""
    try:
        run = get_scan_run_or_raise(
            session=session, scan_run_id=scan_run_id, visible_to=user.principal.organization_id
        )
    except NotFoundError:
        return not_found(user, "scans", "scan run")
    return render(
        "console/scan.html",
        status=status,
        user=user,
        section="scans",
        notice=notice,
        error=error,
        run=run,
        live=scan_tasks(request).progress(run.id) if run.finished_at is None else None,
        # The page follows the stream from here: the run's end is never missed, nothing older
        # is sent again.
        after_id=last_event_id(session=session),
        can_cancel=user.can(Permission.SCAN) and run.finished_at is None,
    )


@router.get("/scans/{scan_run_id}", response_class=HTMLResponse)
def scan_page(
    request: Request,
    session: SessionDep,
    scan_run_id: RunId,
    cancel: Annotated[str | None, Query(max_length=10)] = None,
) -> Response:
    user = signed_in(request)
    if user is None:
        return sign_in_first()
    notice = CANCEL_NOTICES.get(cancel or "")
    return scan_view(session, user, request, scan_run_id, notice=notice)


@router.post("/scans/{scan_run_id}/cancel", response_class=HTMLResponse)
async def cancel_scan_form(request: Request, scan_run_id: RunId) -> Response:
    """Stop a run (roles with ``scan``), whichever process executes it: the API's cancel."""

    async def cancel(user: ConsoleUser, form: Form) -> str:
        _run, stopped = await cancel_run(request, user.principal, scan_run_id)
        return f"/console/scans/{scan_run_id}?cancel={'done' if stopped else 'asked'}"

    again = redraw(scan_view, request, scan_run_id)
    return await post_form(
        request, permission=Permission.SCAN, act=cancel, again=again, max_fields=4
    )
