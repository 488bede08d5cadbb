"""Scan runs: start one in the background (scope checked first), follow it, list recent ones."""

import asyncio
import dataclasses
import logging
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, FastAPI, Path, Query, Request, Response, status
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from api.deps import EngineDep, PrincipalDep, SessionDep, SettingsDep
from api.schemas import MAX_PAGE, ScanAccepted, ScanCreate, ScanProgressRead, ScanRunRead
from cybermission.config import Settings
from cybermission.db import session_scope
from cybermission.scans.models import ScanRun, ScanStatus
from cybermission.scans.pipeline import ScanProgress, execute_scan
from cybermission.scans.scopes import build_guard
from cybermission.scans.service import create_scan_run, get_scan_run_or_raise, list_scan_runs

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/scans", tags=["scans"])

ScanRunId = Annotated[str, Path(max_length=64)]


class ScanTasks:
    """The scans this process runs in the background.

    asyncio keeps only weak references to tasks, so a task nobody holds can be garbage-collected
    mid-run (asyncio docs, ``create_task``). The set holds them until they finish; shutdown
    cancels what is left and records the interruption on each run.
    """

    def __init__(self, *, engine: Engine, settings: Settings) -> None:
        self._engine = engine
        self._settings = settings
        self._tasks: set[asyncio.Task[None]] = set()
        self._progress: dict[str, ScanProgress] = {}

    def __len__(self) -> int:
        return len(self._tasks)

    def progress(self, scan_run_id: str) -> ScanProgress | None:
        """The latest counters of a run still going in this process, else None."""
        return self._progress.get(scan_run_id)

    def start(self, scan_run_id: str) -> asyncio.Task[None]:
        task = asyncio.create_task(self._run(scan_run_id), name=f"scan-{scan_run_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def wait(self) -> None:
        """Wait for every running scan (tests, graceful drains)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def cancel_all(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.wait()

    async def _run(self, scan_run_id: str) -> None:
        logger.info("scan started by api", extra={"scan_run_id": scan_run_id})

        def remember(progress: ScanProgress) -> None:
            # A copy: the pipeline keeps mutating its own counters.
            self._progress[scan_run_id] = dataclasses.replace(progress)

        try:
            await execute_scan(
                engine=self._engine,
                settings=self._settings,
                scan_run_id=scan_run_id,
                progress=remember,
            )
        except asyncio.CancelledError:
            await asyncio.shield(
                run_in_threadpool(
                    _record_failure, self._engine, scan_run_id, "interrupted: the service stopped"
                )
            )
            raise
        except Exception as exc:
            # Broad on purpose: a background failure must land on the run, not vanish with the task.
            logger.exception("scan failed", extra={"scan_run_id": scan_run_id})
            await run_in_threadpool(
                _record_failure, self._engine, scan_run_id, f"{exc.__class__.__name__}: {exc}"
            )
        finally:
            self._progress.pop(scan_run_id, None)


def _record_failure(engine: Engine, scan_run_id: str, error: str) -> None:
    """Mark the run failed, unless the pipeline already closed it itself."""
    with session_scope(engine) as session:
        run = session.get(ScanRun, scan_run_id)
        if run is None or run.finished_at is not None:
            return
        run.status = ScanStatus.FAILED
        run.finished_at = datetime.now(UTC)
        # Reassign (not append): JSON columns only notice a new value.
        run.errors = [*run.errors, {"target": None, "stage": "pipeline", "error": error[:500]}]
        session.add(run)


def _create_run(engine: Engine, settings: Settings, body: ScanCreate, principal: str) -> ScanRun:
    # Committed before the task starts, so the pipeline finds the row; refused scans store nothing.
    with session_scope(engine) as session:
        guard = build_guard(session, settings)
        return create_scan_run(
            session,
            guard=guard,
            targets=body.targets,
            ports=body.ports,
            settings=settings,
            requested_by=principal,
        )


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
    responses={
        403: {"description": "A target lies outside the authorised scopes; nothing was stored"},
        422: {"description": "Malformed targets or ports"},
    },
)
async def post_scan(
    body: ScanCreate,
    request: Request,
    response: Response,
    engine: EngineDep,
    settings: SettingsDep,
    principal: PrincipalDep,
) -> ScanAccepted:
    # Target expansion may resolve names (blocking): keep it off the event loop.
    run = await run_in_threadpool(_create_run, engine, settings, body, principal)
    scan_tasks(request).start(run.id)
    url = str(request.url_for("get_scan", scan_run_id=run.id).path)
    response.headers["Location"] = url
    return ScanAccepted(id=run.id, status=run.status, url=url)


@router.get("", summary="Recent scan runs, newest first")
def get_scans(
    session: SessionDep, limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50
) -> list[ScanRunRead]:
    return [ScanRunRead.model_validate(r) for r in list_scan_runs(session, limit=limit)]


@router.get(
    "/{scan_run_id}",
    name="get_scan",
    summary="One scan run: status, progress counts, errors, what was sent",
    responses={404: {"description": "No such scan run"}},
)
def get_scan(scan_run_id: ScanRunId, session: SessionDep, request: Request) -> ScanRunRead:
    read = ScanRunRead.model_validate(get_scan_run_or_raise(session, scan_run_id))
    live = scan_tasks(request).progress(scan_run_id)
    if live is not None and read.finished_at is None:
        read.progress = ScanProgressRead.model_validate(live)
    return read
