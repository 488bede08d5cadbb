"""The scheduler runner: one process fires the stored schedules (APScheduler 3.x drives the ticks).

Our tables are the source of truth (``cybermission.scans.schedules``); APScheduler's own job
store would be a second one that a restart or a second service could disagree with, so it only
runs two jobs here: a tick that asks the store what is due, and nothing else. A
:class:`ProcessLock` makes sure exactly one process per store ticks; it is re-checked before every
tick and every schedule's decision, so a leader that lost its lock (its PostgreSQL connection
dropped) stops deciding at once instead of running beside the new one.
"""

import logging
import threading
from collections.abc import Callable
from datetime import datetime

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import Engine

from cybermission.config import Settings
from cybermission.db import utcnow
from cybermission.locks import ProcessLock
from cybermission.scans.schedules import SitePlanner, TickReport, tick

logger = logging.getLogger(__name__)

SCHEDULER_LOCK = "cybermission-scheduler"

ScanLauncher = Callable[[str], object]


class ScheduleRunner:
    """Ticks the schedules from an APScheduler background job while it holds the scheduler lock.

    ``launch`` starts a stored scan run (the service passes its scan task runner). ``plan_site``
    (``cybermission.sensors.service.plan_site_scan`` in a distributed deployment) takes the runs
    of scopes whose site has a sensor: those are dispatched as chunks, not launched. ``now`` is
    injectable: tests drive :meth:`tick_once` with a controlled clock instead of sleeping.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        settings: Settings,
        launch: ScanLauncher,
        tick_s: float = 15.0,
        now: Callable[[], datetime] = utcnow,
        plan_site: SitePlanner | None = None,
    ) -> None:
        self._engine = engine
        self._plan_site = plan_site
        self._launch = launch
        self._settings = settings
        self._tick_s = tick_s
        self._now = now
        self._lock = ProcessLock(engine, SCHEDULER_LOCK)
        self._scheduler: BackgroundScheduler | None = None
        self._tick_guard = threading.Lock()

    @property
    def is_leader(self) -> bool:
        return self._lock.held

    def _leads(self) -> bool:
        """Whether this process is the leader now: a lock taken earlier is re-checked (a lost
        PostgreSQL connection releases it, and another process may hold it by now)."""
        if self._lock.held and self._lock.verify():
            return True
        if self._lock.acquire():
            logger.info("scheduler leadership taken")
            return True
        return False

    def tick_once(self) -> TickReport | None:
        """Fire what is due now, if this process holds the lock (tries to take it first)."""
        with self._tick_guard:
            if not self._leads():
                return None
            report = tick(
                self._engine,
                settings=self._settings,
                now=self._now(),
                plan_site=self._plan_site,
                still_leader=self._lock.verify,
            )
        for scan_run_id in report.launched:
            self._launch(scan_run_id)
        return report

    def start(self) -> None:
        scheduler = BackgroundScheduler(timezone="UTC")
        # coalesce + max_instances=1: a slow tick is never run twice at once nor queued up.
        scheduler.add_job(
            self._tick_logged,
            "interval",
            seconds=self._tick_s,
            id="schedules-tick",
            coalesce=True,
            max_instances=1,
            next_run_time=datetime.now(tz=None).astimezone(),
        )
        scheduler.start()
        self._scheduler = scheduler
        logger.info("scheduler started", extra={"tick_s": self._tick_s})

    def _tick_logged(self) -> None:
        try:
            self.tick_once()
        except Exception:
            # Broad on purpose: APScheduler would only print it; the next tick tries again.
            logger.exception("schedule tick failed")

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
            self._scheduler = None
        with self._tick_guard:
            self._lock.release()
        logger.info("scheduler stopped")
