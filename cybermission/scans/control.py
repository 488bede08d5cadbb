"""Stopping a running scan from outside its task, and the heartbeat that keeps its lease.

Whoever wants a run to stop (a signal handler, a shutting-down service, a cancel request seen on
the heartbeat, a lease lost to a reaper) calls :meth:`RunControl.request_stop` with the status
the run must end in and why; the scan task is cancelled and records exactly that.
"""

import asyncio
import logging
import threading
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from cybermission.scans.models import ScanStatus
from cybermission.scans.ownership import RunOwner, renew_lease

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StopRequest:
    """How a run stopped from outside must end: ``interrupted`` or ``cancelled``, and why."""

    status: ScanStatus
    reason: str


class RunControl:
    """The handle of one executing run: who may stop it, and how it must then end."""

    def __init__(self) -> None:
        self.stop: StopRequest | None = None
        self._task: asyncio.Task[object] | None = None

    def bind(self, task: asyncio.Task[object]) -> None:
        """The task to cancel on a stop request; a request made before binding applies at once."""
        self._task = task
        if self.stop is not None:
            task.cancel()

    def unbind(self) -> None:
        """The run is ending: a stop requested from now on cancels nothing. The task executing a
        run outlives it (a test's, a service's, the next run's), and a heartbeat still in its
        thread when the run closed read "not owned" and cancelled whatever the task did next
        (seen: the next scan's start, cancelled)."""
        self._task = None

    def request_stop(self, status: ScanStatus, reason: str) -> None:
        """Stop the run; the first request decides its final status and reason, and later ones
        change nothing (a second cancellation would cut short the recording of the first).

        Safe from any thread: the heartbeat asks from a worker thread, and a task is cancelled
        on its own loop's thread only.
        """
        if self.stop is not None:
            return
        self.stop = StopRequest(status, reason)
        task = self._task
        if task is None or task.done():
            return
        try:
            task.get_loop().call_soon_threadsafe(self._cancel, task)
        except RuntimeError:
            return  # the loop is closed: nothing runs there any more

    def _cancel(self, task: "asyncio.Task[object]") -> None:
        if self._task is task and not task.done():
            task.cancel()


def renew_once(engine: Engine, scan_run_id: str, owner: RunOwner, control: RunControl) -> bool:
    """One heartbeat of the run's owner; False once the run must stop (``control`` was told how:
    its lease was taken, or a cancel request was seen).

    A failed renewal is only logged: the lease is several heartbeats long, and a store that stays
    away makes the run's own writes fail, which ends it.
    """
    try:
        renewal = renew_lease(engine, scan_run_id, owner)
    except SQLAlchemyError as exc:
        logger.warning(
            "heartbeat not recorded", extra={"scan_run_id": scan_run_id, "error": str(exc)}
        )
        return True
    if not renewal.owned:
        control.request_stop(
            ScanStatus.INTERRUPTED,
            "interrupted: another process closed this run while it ran (its lease had lapsed)",
        )
        return False
    if renewal.cancel_requested_by is not None:
        control.request_stop(ScanStatus.CANCELLED, f"cancelled by {renewal.cancel_requested_by}")
        return False
    return True


async def keep_lease(
    engine: Engine, scan_run_id: str, owner: RunOwner, *, interval_s: float, control: RunControl
) -> None:
    """Renew the run's lease every ``interval_s`` until cancelled or told to stop
    (:func:`renew_once`); the first renewal is at once, so a cancel recorded while the run was
    queued is honoured before anything is sent."""
    while True:
        if not await asyncio.to_thread(renew_once, engine, scan_run_id, owner, control):
            return
        await asyncio.sleep(interval_s)


class LeaseThread:
    """:func:`keep_lease` for a run executed by blocking code (a listening session): a daemon
    thread renews the lease every ``interval_s`` until :meth:`stop`; the code polls
    ``control.stop`` to learn that it must end, and how."""

    def __init__(
        self,
        engine: Engine,
        scan_run_id: str,
        owner: RunOwner,
        *,
        interval_s: float,
        control: RunControl,
    ) -> None:
        self._args = (engine, scan_run_id, owner, control)
        self._interval_s = interval_s
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="run-lease", daemon=True)

    def start(self) -> "LeaseThread":
        self._thread.start()
        return self

    def _loop(self) -> None:
        while renew_once(*self._args) and not self._stopping.wait(self._interval_s):
            pass

    def stop(self) -> None:
        """No more heartbeats (the run is about to end); waits a while for one in progress (a
        store that does not answer cannot hold the run's end for long: the thread is a daemon)."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=max(5.0, self._interval_s))
