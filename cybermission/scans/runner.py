"""The scan runner of a service process: stored runs executed as background asyncio tasks.

The API starts runs here and reads their live progress; the scheduler launches due runs here. It
lives in the core so neither depends on a route module. Runs of other processes are stopped
through the store (``cybermission.scans.ownership``); these are this process's own.
"""

import asyncio
import dataclasses
import logging
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from cybermission.config import Settings
from cybermission.db import session_scope
from cybermission.guard import ScopeGuard
from cybermission.scans.control import RunControl
from cybermission.scans.models import ScanStatus
from cybermission.scans.ownership import claim_run_end
from cybermission.scans.pipeline import execute_scan
from cybermission.scans.probing import ScanProgress
from cybermission.scans.run_metrics import count_run_ended
from cybermission.store_faults import describe_store_error, retry_transient
from cybermission.store_links import store_deadline

logger = logging.getLogger(__name__)


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
        self._by_run: dict[str, asyncio.Task[None]] = {}
        self._organization: dict[str, str | None] = {}
        self._progress: dict[str, ScanProgress] = {}
        self._controls: dict[str, RunControl] = {}

    def __len__(self) -> int:
        return len(self._tasks)

    def progress(self, scan_run_id: str) -> ScanProgress | None:
        """The latest counters of a run still going in this process, else None."""
        return self._progress.get(scan_run_id)

    def running(self) -> list[tuple[str, str | None, ScanProgress]]:
        """(run id, organisation, latest counters) of every run going in this process."""
        return [
            (run_id, self._organization.get(run_id), progress)
            for run_id, progress in list(self._progress.items())
        ]

    def start(
        self,
        scan_run_id: str,
        *,
        guard: ScopeGuard | None = None,
        organization_id: str | None = None,
    ) -> asyncio.Task[None]:
        """Run ``scan_run_id`` in the background; ``guard`` narrows it to an organisation's."""
        control = RunControl()
        task = asyncio.create_task(
            self._run(scan_run_id, guard, control), name=f"scan-{scan_run_id}"
        )
        self._tasks.add(task)
        self._by_run[scan_run_id] = task
        self._controls[scan_run_id] = control
        self._organization[scan_run_id] = organization_id

        def forget(_: asyncio.Task[None]) -> None:
            self._tasks.discard(task)
            self._by_run.pop(scan_run_id, None)
            self._controls.pop(scan_run_id, None)
            self._organization.pop(scan_run_id, None)

        task.add_done_callback(forget)
        return task

    def runs(self, scan_run_id: str) -> bool:
        """Whether ``scan_run_id`` is executing in this process now."""
        task = self._by_run.get(scan_run_id)
        return task is not None and not task.done()

    async def cancel(self, scan_run_id: str, *, by: str) -> bool:
        """Cancel a run of this process and wait until it is recorded; False if none is running.

        The run ends ``cancelled`` with who asked; what it had written stays (findings, assets),
        nothing half-written. A run of another process is cancelled through the store
        (:func:`cybermission.scans.ownership.cancel_unowned`).
        """
        task = self._by_run.get(scan_run_id)
        control = self._controls.get(scan_run_id)
        if task is None or control is None or task.done():
            return False
        control.request_stop(ScanStatus.CANCELLED, f"cancelled by {by}")
        await asyncio.gather(task, return_exceptions=True)
        return True

    async def wait(self) -> None:
        """Wait for every running scan (tests, graceful drains)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def stop_all(self, reason: str) -> None:
        """Stop every run of this process: each ends ``interrupted`` with ``reason`` (resumable)."""
        for control in list(self._controls.values()):
            control.request_stop(ScanStatus.INTERRUPTED, reason)
        await self.wait()

    async def _run(self, scan_run_id: str, guard: ScopeGuard | None, control: RunControl) -> None:
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
                guard=guard,
                control=control,
            )
        except asyncio.CancelledError:
            # Cancelled before the pipeline took the run (it records its own stops otherwise).
            await asyncio.shield(
                asyncio.to_thread(
                    self._close,
                    scan_run_id,
                    ScanStatus.INTERRUPTED,
                    "interrupted: the service stopped",
                )
            )
            raise
        except Exception as exc:
            # Broad on purpose: a background failure must land on the run, not vanish with the task.
            logger.exception("scan failed", extra={"scan_run_id": scan_run_id})
            await asyncio.to_thread(
                self._close,
                scan_run_id,
                ScanStatus.FAILED,
                f"failed: {exc.__class__.__name__}: {exc}",
            )
        finally:
            self._progress.pop(scan_run_id, None)

    def _close(self, scan_run_id: str, status: ScanStatus, reason: str) -> None:
        """Record the end of a run the pipeline did not close, transient store errors retried;
        a store that stays away or silent (each attempt under the stall deadline) is logged and
        the task ends: the run stays ``running`` until another process's reaper, or this
        service's next start, judges its owner gone."""
        try:
            retry_transient(
                lambda: _record_end(self._engine, scan_run_id, status, reason),
                horizon_s=self._settings.runs.store_retry_s,
                what="record the end of a run",
            )
        except SQLAlchemyError as exc:
            logger.warning(
                "scan run end not recorded",
                extra={
                    "scan_run_id": scan_run_id,
                    "status": str(status),
                    "error": describe_store_error(exc),
                },
            )


def _record_end(engine: Engine, scan_run_id: str, status: ScanStatus, reason: str) -> None:
    """End the run in ``status``, unless the pipeline already closed it itself; under the
    engine's stall deadline (``store_links``): a silent store fails it, never hangs it."""
    with store_deadline(engine, "record the end of a run"), session_scope(engine) as session:
        run = claim_run_end(session, scan_run_id, datetime.now(UTC))
        if run is None:
            return
        run.status = status
        run.reason = reason[:500]
        # Reassign (not append): JSON columns only notice a new value.
        run.errors = [*run.errors, {"target": None, "stage": "pipeline", "error": reason[:500]}]
        session.add(run)
        count_run_ended(session, run)
