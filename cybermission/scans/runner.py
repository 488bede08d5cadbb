"""The scan runner of a service process: stored runs executed as background asyncio tasks.

The API starts runs here and reads their live progress; the scheduler launches due runs here. It
lives in the core so neither depends on a route module.
"""

import asyncio
import dataclasses
import logging
from datetime import UTC, datetime

from sqlalchemy import Engine

from cybermission.config import Settings
from cybermission.db import session_scope
from cybermission.guard import ScopeGuard
from cybermission.scans.models import ScanRun, ScanStatus
from cybermission.scans.pipeline import execute_scan
from cybermission.scans.probing import ScanProgress

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
        task = asyncio.create_task(self._run(scan_run_id, guard), name=f"scan-{scan_run_id}")
        self._tasks.add(task)
        self._by_run[scan_run_id] = task
        self._organization[scan_run_id] = organization_id

        def forget(_: asyncio.Task[None]) -> None:
            self._tasks.discard(task)
            self._by_run.pop(scan_run_id, None)
            self._organization.pop(scan_run_id, None)

        task.add_done_callback(forget)
        return task

    async def cancel(self, scan_run_id: str) -> bool:
        """Cancel a run of this process and wait until it is recorded; False if none is running.

        The pipeline catches the cancellation, marks the run failed with "interrupted" and
        re-raises; what it had written stays (findings, assets), nothing half-written.
        """
        task = self._by_run.get(scan_run_id)
        if task is None or task.done():
            return False
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return True

    async def wait(self) -> None:
        """Wait for every running scan (tests, graceful drains)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def cancel_all(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.wait()

    async def _run(self, scan_run_id: str, guard: ScopeGuard | None) -> None:
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
            )
        except asyncio.CancelledError:
            await asyncio.shield(
                asyncio.to_thread(
                    _record_failure, self._engine, scan_run_id, "interrupted: the service stopped"
                )
            )
            raise
        except Exception as exc:
            # Broad on purpose: a background failure must land on the run, not vanish with the task.
            logger.exception("scan failed", extra={"scan_run_id": scan_run_id})
            await asyncio.to_thread(
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
