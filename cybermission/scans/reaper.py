"""The periodic reaper of a service process: closes runs whose owner is gone, every few seconds.

Start-up reaping (every service process, before it does anything) calls
:func:`cybermission.scans.ownership.reap_orphaned_runs` directly; this thread repeats it for the
life of ``serve``, so a run whose owner died on another host ends within lease + interval.
"""

import logging
import threading

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from cybermission.config import RunSettings
from cybermission.scans.ownership import reap_orphaned_runs

logger = logging.getLogger(__name__)


class RunReaper:
    """A daemon thread reaping orphaned runs every ``settings.reaper_interval_s``."""

    def __init__(self, engine: Engine, settings: RunSettings) -> None:
        self._engine = engine
        self._settings = settings
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def reap_once(self) -> list[str]:
        """One pass; a store that does not answer is logged and tried again next time."""
        try:
            return reap_orphaned_runs(self._engine, lease_s=self._settings.lease_s)
        except SQLAlchemyError as exc:
            logger.warning("run reaper: store unavailable", extra={"error": str(exc)})
            return []

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="run-reaper", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stopping.wait(self._settings.reaper_interval_s):
            self.reap_once()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
