"""Console pages of scans: the recent runs, and one run (its counts, what it sent, its errors)
with its progress live from the event stream while it runs. The reads are the API's
(``cybermission.scans.service``); the live counters come from this process's scan tasks."""

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, Response

from api.console.pages import not_found, render, sign_in_first, signed_in
from api.deps import SessionDep
from api.routes.scans import scan_tasks
from cybermission.errors import NotFoundError
from cybermission.events import last_event_id
from cybermission.scans.models import ScanStatus
from cybermission.scans.service import get_scan_run_or_raise, list_scan_runs

router = APIRouter(prefix="/console", include_in_schema=False)

RECENT = 100


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


@router.get("/scans/{scan_run_id}", response_class=HTMLResponse)
def scan_page(
    request: Request, session: SessionDep, scan_run_id: Annotated[str, Path(max_length=64)]
) -> Response:
    user = signed_in(request)
    if user is None:
        return sign_in_first()
    try:
        run = get_scan_run_or_raise(
            session=session, scan_run_id=scan_run_id, visible_to=user.principal.organization_id
        )
    except NotFoundError:
        return not_found(user, "scans", "scan run")
    return render(
        "console/scan.html",
        user=user,
        section="scans",
        run=run,
        live=scan_tasks(request).progress(run.id) if run.finished_at is None else None,
        # The page follows the stream from here: the run's end is never missed, nothing older
        # is sent again.
        after_id=last_event_id(session=session),
    )
