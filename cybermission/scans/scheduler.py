"""The scheduler runner: one process fires the stored schedules (APScheduler 3.x drives the ticks).

Our tables are the source of truth (``cybermission.scans.schedules``); APScheduler's own job
store would be a second one that a restart or a second service could disagree with, so it only
runs two jobs here: a tick that asks the store what is due, and nothing else. A
:class:`ProcessLock` makes sure exactly one process per store ticks.
"""

import fcntl
import hashlib
import logging
import os
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import IO

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import Connection, Engine, text

from cybermission.config import Settings
from cybermission.db import utcnow
from cybermission.scans.schedules import TickReport, tick

logger = logging.getLogger(__name__)

SCHEDULER_LOCK = "cybermission-scheduler"

_memory_locks: dict[str, threading.Lock] = {}
_memory_guard = threading.Lock()


class ProcessLock:
    """Exactly one holder per store across processes.

    PostgreSQL: a session advisory lock (``pg_try_advisory_lock``); SQLite: ``flock`` on a file
    beside the database. Both vanish with the holding process, ``kill -9`` included, so a crashed
    holder never blocks its successor and no lease has to expire first.
    """

    def __init__(self, engine: Engine, name: str) -> None:
        self._engine = engine
        self._name = name
        self._connection: Connection | None = None
        self._file: IO[bytes] | None = None
        self._memory: threading.Lock | None = None

    @property
    def held(self) -> bool:
        return self._connection is not None or self._file is not None or self._memory is not None

    def acquire(self) -> bool:
        """Take the lock if free; never blocks. True if this object holds it now."""
        if self.held:
            return True
        dialect = self._engine.dialect.name
        if dialect == "postgresql":
            return self._acquire_postgres()
        database = self._engine.url.database
        if dialect == "sqlite" and database and database != ":memory:":
            return self._acquire_file(Path(f"{database}.{self._name}.lock"))
        with _memory_guard:
            lock = _memory_locks.setdefault(self._name, threading.Lock())
        if lock.acquire(blocking=False):
            self._memory = lock
            return True
        return False

    def _acquire_postgres(self) -> bool:
        # Advisory lock keys are bigint: the first 8 bytes of a hash of the name, signed.
        key = int.from_bytes(hashlib.sha256(self._name.encode()).digest()[:8], "big", signed=True)
        connection = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        got = bool(connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar())
        if got:
            self._connection = connection
            self._key = key
        else:
            connection.close()
        return got

    def _acquire_file(self, path: Path) -> bool:
        handle = path.open("ab")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n".encode())
        handle.flush()
        self._file = handle
        return True

    def release(self) -> None:
        if self._connection is not None:
            try:
                self._connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
            finally:
                self._connection.close()
                self._connection = None
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None
        if self._memory is not None:
            self._memory.release()
            self._memory = None


ScanLauncher = Callable[[str], object]


class ScheduleRunner:
    """Ticks the schedules from an APScheduler background job while it holds the scheduler lock.

    ``launch`` starts a stored scan run (the service passes its scan task runner). ``now`` is
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
    ) -> None:
        self._engine = engine
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

    def tick_once(self) -> TickReport | None:
        """Fire what is due now, if this process holds the lock (tries to take it first)."""
        with self._tick_guard:
            if not self._lock.acquire():
                return None
            report = tick(self._engine, settings=self._settings, now=self._now())
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
