"""Scan runs: start one in the background (scope checked first), follow it, cancel it, resume it
when it was interrupted, list them.

A token of an organisation scans only within its organisation's scopes, and its runs belong to
its organisation.
"""

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Response, status
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from api.deps import (
    EngineDep,
    Reader,
    SessionDep,
    SettingsDep,
    get_engine,
    get_settings,
    require,
)
from api.schemas import MAX_PAGE
from api.schemas.scans import ScanProgressRead, ScanRunAcceptedRead, ScanRunCreate, ScanRunRead
from cybermission.auth.models import Permission
from cybermission.auth.service import Principal
from cybermission.config import Settings
from cybermission.db import session_scope
from cybermission.errors import ConflictError
from cybermission.guard import ScopeGuard
from cybermission.scans.models import ScanRun, ScanStatus
from cybermission.scans.ownership import cancel_unowned, this_process
from cybermission.scans.resume import reopen_run
from cybermission.scans.runner import ScanTasks
from cybermission.scans.scopes import build_guard
from cybermission.scans.service import create_scan_run, get_scan_run_or_raise, list_scan_runs

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/scans", tags=["scans"])

ScanRunId = Annotated[str, Path(max_length=64)]
Operator = Annotated[Principal, Depends(require(Permission.SCAN))]


def _create_run(
    engine: Engine, settings: Settings, body: ScanRunCreate, caller: Principal
) -> tuple[ScanRun, ScopeGuard]:
    # Committed before the task starts, so the pipeline finds the row; refused scans store nothing.
    with session_scope(engine) as session:
        # The caller's organisation's scopes only (a global caller: every scope, or the
        # settings' default when none is stored); the run scans and places devices with it.
        guard = build_guard(session, settings, organization_id=caller.organization_id)
        run = create_scan_run(
            session,
            guard=guard,
            targets=body.targets,
            ports=body.ports,
            settings=settings,
            requested_by=caller.name,
            organization_id=caller.organization_id,
            owner=this_process(),  # this process starts it next: owned from birth
        )
        return run, guard


def scan_tasks(request: Request) -> ScanTasks:
    tasks: ScanTasks = request.app.state.scan_tasks
    return tasks


def install_scan_tasks(app: FastAPI, *, engine: Engine, settings: Settings) -> ScanTasks:
    tasks = ScanTasks(engine=engine, settings=settings)
    app.state.scan_tasks = tasks
    return tasks


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Start a scan; it runs in the background",
    operation_id="startScan",
    responses={
        403: {"description": "A target lies outside the authorised scopes; nothing was stored"},
        422: {"description": "Malformed targets or ports"},
    },
)
async def post_scan(
    body: ScanRunCreate,
    request: Request,
    response: Response,
    engine: EngineDep,
    settings: SettingsDep,
    caller: Operator,
) -> ScanRunAcceptedRead:
    # Target expansion may resolve names (blocking): keep it off the event loop.
    run, guard = await run_in_threadpool(_create_run, engine, settings, body, caller)
    scan_tasks(request).start(run.id, guard=guard, organization_id=caller.organization_id)
    url = str(request.url_for("get_scan", scan_run_id=run.id).path)
    response.headers["Location"] = url
    return ScanRunAcceptedRead(id=run.id, status=run.status, url=url)


@router.get("", summary="Recent scan runs, newest first")
def get_scans(
    session: SessionDep,
    caller: Reader,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    status: ScanStatus | None = None,
) -> list[ScanRunRead]:
    runs = list_scan_runs(
        session=session,
        visible_to=caller.organization_id,
        statuses=None if status is None else [status],
        limit=limit,
    )
    return [ScanRunRead.model_validate(r) for r in runs]


@router.get(
    "/{scan_run_id}",
    name="get_scan",
    summary="One scan run: status, progress counts, errors, what was sent",
    responses={404: {"description": "No such scan run"}},
)
def get_scan(
    scan_run_id: ScanRunId, session: SessionDep, request: Request, caller: Reader
) -> ScanRunRead:
    run = get_scan_run_or_raise(
        session=session, scan_run_id=scan_run_id, visible_to=caller.organization_id
    )
    read = ScanRunRead.model_validate(run)
    live = scan_tasks(request).progress(scan_run_id)
    if live is not None and read.finished_at is None:
        read.progress = ScanProgressRead.model_validate(live)
    return read


def _read_run(engine: Engine, caller: Principal, scan_run_id: str) -> ScanRun:
    with session_scope(engine) as session:
        return get_scan_run_or_raise(
            session=session, scan_run_id=scan_run_id, visible_to=caller.organization_id
        )


@router.post(
    "/{scan_run_id}/cancel",
    summary="Cancel a scan run, whichever process executes it; it ends 'cancelled'",
    responses={
        200: {"description": "The run is stopped: cancelled (or it ended meanwhile)"},
        202: {
            "description": "Cancel recorded; its owner, another process, stops at its next "
            "heartbeat (follow the run)"
        },
        404: {"description": "No such scan run"},
        409: {"description": "The run had already finished"},
    },
)
async def cancel_scan(
    scan_run_id: ScanRunId, request: Request, response: Response, caller: Operator
) -> ScanRunRead:
    run, stopped = await cancel_run(request, caller, scan_run_id)
    if not stopped:
        response.status_code = status.HTTP_202_ACCEPTED
    return ScanRunRead.model_validate(run)


async def cancel_run(request: Request, caller: Principal, scan_run_id: str) -> tuple[ScanRun, bool]:
    """Cancel a run whichever process executes it (the API's and the console's one way): the
    run as it is now, and whether it is stopped (False: the cancel is recorded and its owner,
    another process, stops at its next heartbeat). A run that had finished is a ConflictError."""
    engine, settings = get_engine(request), get_settings(request)
    run = await run_in_threadpool(_read_run, engine, caller, scan_run_id)
    if run.finished_at is not None:
        raise ConflictError(f"scan run {scan_run_id!r} already finished ({run.status})")
    logger.info("scan cancel requested", extra={"scan_run_id": scan_run_id, "by": caller.name})
    stopped = True
    if not await scan_tasks(request).cancel(scan_run_id, by=caller.name):
        closed = await run_in_threadpool(
            cancel_unowned, engine, scan_run_id, by=caller.name, lease_s=settings.runs.lease_s
        )
        stopped = closed is not None
    return await run_in_threadpool(_read_run, engine, caller, scan_run_id), stopped


@router.post(
    "/{scan_run_id}/resume",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Resume an interrupted scan run in this service, where it stopped",
    responses={
        202: {
            "description": "Resumed in the background: only the hosts it had not finished are "
            "scanned (follow the run)"
        },
        404: {"description": "No such scan run"},
        409: {
            "description": "The run is not interrupted: still running in a live process, or "
            "finished otherwise (succeeded, partial, failed, cancelled)"
        },
    },
)
async def resume_scan(
    scan_run_id: ScanRunId,
    request: Request,
    response: Response,
    engine: EngineDep,
    settings: SettingsDep,
    caller: Operator,
) -> ScanRunAcceptedRead:
    run = await run_in_threadpool(
        reopen_run,
        engine,
        scan_run_id,
        by=caller.name,
        lease_s=settings.runs.lease_s,
        owner=this_process(),  # this process executes it next: owned from now
        visible_to=caller.organization_id,
    )
    logger.info("scan resumed", extra={"scan_run_id": scan_run_id, "by": caller.name})
    scan_tasks(request).start(run.id, organization_id=run.organization_id)
    url = str(request.url_for("get_scan", scan_run_id=run.id).path)
    response.headers["Location"] = url
    return ScanRunAcceptedRead(id=run.id, status=run.status, url=url)
