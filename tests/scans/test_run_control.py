"""A run's control after the run: a stop requested late (a heartbeat still in its thread when the
run closed) must not cancel the task that executed the run, which goes on to other work."""

import asyncio
from pathlib import Path

from sqlalchemy import Engine

from cybermission.config import PacingProfile, PacingSettings, load_settings
from cybermission.guard import ScopeGuard, ScopeRule
from cybermission.scans.control import RunControl
from cybermission.scans.models import ScanStatus
from tests.scans.stored_runs import scan_now
from tests.timing import scaled

# Address plan: this module sends to 127.52.0.1 only (nothing listens there).
TARGET = "127.52.0.1"
GUARD = ScopeGuard([ScopeRule.build("run-control-tests", ["127.52.0.0/24"])])


async def test_a_stop_requested_after_the_run_cancels_nothing(
    engine: Engine, tmp_path: Path
) -> None:
    settings = load_settings(
        database_url=f"sqlite:///{tmp_path}/x.db",
        pacing=PacingSettings(profile=PacingProfile.LAB, connect_timeout_s=scaled(1.0)),
        rules_dirs=[Path("rules")],
    )
    control = RunControl()
    finished = await scan_now(engine, settings, [TARGET], guard=GUARD, control=control)
    assert finished.status is ScanStatus.SUCCEEDED
    # What a heartbeat in flight at the run's end does: it reads the closed run as no longer
    # owned and asks, from its worker thread, for the run to stop.
    await asyncio.to_thread(
        control.request_stop, ScanStatus.INTERRUPTED, "interrupted: lease lapsed"
    )
    # The task that ran the scan goes on (the next scan, a service's loop): not cancelled.
    await asyncio.sleep(scaled(0.5))
    assert not asyncio.current_task().cancelling()  # type: ignore[union-attr]


async def test_a_stop_requested_from_another_thread_cancels_the_running_task() -> None:
    control = RunControl()
    task: asyncio.Task[object] = asyncio.create_task(asyncio.sleep(3600))
    control.bind(task)
    await asyncio.to_thread(control.request_stop, ScanStatus.CANCELLED, "cancelled by test")
    done, _ = await asyncio.wait({task}, timeout=scaled(30))
    assert task in done
    assert task.cancelled()
    assert control.stop is not None
    assert control.stop.status is ScanStatus.CANCELLED
