"""Scan schedules: list, read, create, change, remove, run now; their decisions and audit trail.

Reading needs the read permission; writing and run-now the schedule permission (operators). An
organisation's token sees and manages only schedules of its own sites' scopes.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from sqlalchemy import Engine
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from api.deps import Reader, SessionDep, SettingsDep, get_engine, get_settings, require
from api.routes.scans import scan_tasks
from api.schemas.schedules import (
    ScheduleAuditRead,
    ScheduleCreate,
    ScheduleRead,
    ScheduleRunRead,
    ScheduleUpdate,
)
from cybermission.auth.models import Permission
from cybermission.auth.service import Principal
from cybermission.config import Settings
from cybermission.db import session_scope
from cybermission.scans.schedules import (
    ScheduleBase,
    create_schedule,
    delete_schedule,
    get_schedule_or_raise,
    list_schedule_audit,
    list_schedule_runs,
    list_schedules,
    run_schedule_now,
    update_schedule,
)
from cybermission.scans.scopes import get_scope_or_raise
from cybermission.sensors.service import plan_site_scan
from cybermission.sites.service import get_site_by_id_or_raise

router = APIRouter(prefix="/schedules", tags=["schedules"])

ScheduleId = Annotated[str, Path(max_length=64)]
Scheduler = Annotated[Principal, Depends(require(Permission.SCHEDULE))]


def _check_placement(
    session: Session, caller: Principal, scope_id: str | None, site_id: str | None
) -> None:
    if scope_id is not None:
        get_scope_or_raise(session=session, scope_id=scope_id, visible_to=caller.organization_id)
    if site_id is not None:
        get_site_by_id_or_raise(session=session, site_id=site_id, visible_to=caller.organization_id)


def _stored(fields: dict[str, Any]) -> dict[str, Any]:
    """Windows and blackouts as the JSON the table keeps."""
    for key in ("windows", "blackouts"):
        if fields.get(key) is not None:
            fields[key] = [item.model_dump(mode="json") for item in fields[key]]
    return fields


@router.get("", summary="Schedules the caller sees, by name")
def get_schedules(session: SessionDep, caller: Reader) -> list[ScheduleRead]:
    return [
        ScheduleRead.model_validate(s)
        for s in list_schedules(session, visible_to=caller.organization_id)
    ]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create a schedule (cron or interval, in the site's time zone)",
    responses={
        403: {"description": "Targets outside the schedule's scope, or the role may not"},
        409: {"description": "A schedule with that name exists"},
    },
)
def post_schedule(
    body: ScheduleCreate, session: SessionDep, settings: SettingsDep, caller: Scheduler
) -> ScheduleRead:
    _check_placement(session, caller, body.scope_id, body.site_id)
    data = ScheduleBase.model_validate(body.model_dump(mode="json"))
    schedule = create_schedule(session, data=data, settings=settings, actor=caller.name)
    return ScheduleRead.model_validate(schedule)


@router.get("/{schedule_id}", summary="One schedule", responses={404: {"description": "None"}})
def get_schedule(schedule_id: ScheduleId, session: SessionDep, caller: Reader) -> ScheduleRead:
    schedule = get_schedule_or_raise(session, schedule_id, visible_to=caller.organization_id)
    return ScheduleRead.model_validate(schedule)


@router.patch("/{schedule_id}", summary="Change a schedule (audited)")
def patch_schedule(
    schedule_id: ScheduleId,
    body: ScheduleUpdate,
    session: SessionDep,
    settings: SettingsDep,
    caller: Scheduler,
) -> ScheduleRead:
    get_schedule_or_raise(session, schedule_id, visible_to=caller.organization_id)
    changes = {k: getattr(body, k) for k in body.model_fields_set}
    _check_placement(session, caller, changes.get("scope_id"), changes.get("site_id"))
    schedule = update_schedule(
        session,
        schedule_id=schedule_id,
        changes=_stored(changes),
        settings=settings,
        actor=caller.name,
    )
    return ScheduleRead.model_validate(schedule)


@router.delete(
    "/{schedule_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Remove a schedule"
)
def remove_schedule(schedule_id: ScheduleId, session: SessionDep, caller: Scheduler) -> Response:
    get_schedule_or_raise(session, schedule_id, visible_to=caller.organization_id)
    delete_schedule(session, schedule_id=schedule_id, actor=caller.name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _run_now(
    engine: Engine, settings: Settings, caller: Principal, schedule_id: str
) -> tuple[ScheduleRunRead, str | None, str | None]:
    # Committed before the scan task starts, so the pipeline finds its run.
    with session_scope(engine) as session:
        schedule = get_schedule_or_raise(session, schedule_id, visible_to=caller.organization_id)
        run, scan_id = run_schedule_now(
            session,
            schedule_id=schedule_id,
            settings=settings,
            actor=caller.name,
            plan_site=plan_site_scan,
        )
        return ScheduleRunRead.model_validate(run), scan_id, schedule.organization_id


@router.post(
    "/{schedule_id}/run",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Run now: the window is waived, blackouts and overlap are not; says what it did",
    operation_id="runScheduleNow",
)
async def post_run_now(
    schedule_id: ScheduleId, request: Request, caller: Scheduler
) -> ScheduleRunRead:
    return await run_now(request, caller, schedule_id)


async def run_now(request: Request, caller: Principal, schedule_id: str) -> ScheduleRunRead:
    """Run a schedule now and start the scan it decided on, if any (the API's and the
    console's one way): the scheduler's decision."""
    engine, settings = get_engine(request), get_settings(request)
    run, scan_id, organization_id = await run_in_threadpool(
        _run_now, engine, settings, caller, schedule_id
    )
    if scan_id is not None:
        scan_tasks(request).start(scan_id, organization_id=organization_id)
    return run


@router.get("/{schedule_id}/runs", summary="The scheduler's decisions, newest first")
def get_schedule_runs(
    schedule_id: ScheduleId,
    session: SessionDep,
    caller: Reader,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[ScheduleRunRead]:
    get_schedule_or_raise(session, schedule_id, visible_to=caller.organization_id)
    runs = list_schedule_runs(session, schedule_id=schedule_id, limit=limit)
    return [ScheduleRunRead.model_validate(r) for r in runs]


@router.get("/{schedule_id}/audit", summary="Who changed the schedule, oldest first")
def get_schedule_audit(
    schedule_id: ScheduleId,
    session: SessionDep,
    caller: Reader,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[ScheduleAuditRead]:
    get_schedule_or_raise(session, schedule_id, visible_to=caller.organization_id)
    audit = list_schedule_audit(session, schedule_id=schedule_id, limit=limit)
    return [ScheduleAuditRead.model_validate(a) for a in audit]
