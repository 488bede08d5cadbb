"""Who executes a scan run: its owner, the lease it renews, cancel requests, and the reaping of
runs whose owner is gone (DESIGN.md §6, "Runs are owned").

A process that executes a run writes itself into the row (instance id, host, pid) and renews
``heartbeat_at`` while it runs. Any process may then judge the owner gone: same host and the pid
no longer exists (``kill -9``, a crash: noticed at once), or a heartbeat older than the lease
(another host, a hung process). The first to notice closes the run ``interrupted`` with the reason;
a conditional update makes sure two reapers, or a reaper and a late heartbeat, never both win.

Clocks: heartbeats carry the writer's clock and are judged by the reader's; hosts sharing a store
must keep their clocks within a small part of the lease (NTP does).
"""

import logging
import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Engine, update
from sqlmodel import Session, col, select

from cybermission.config import RunSettings
from cybermission.db import session_scope, utcnow
from cybermission.events import EventKind, record_event
from cybermission.scans.models import ScanRun, ScanStatus
from cybermission.scans.run_metrics import count_run_ended
from cybermission.store_faults import retry_transient
from cybermission.store_links import store_deadline

logger = logging.getLogger(__name__)

# One instance id per process start, keyed by pid so a forked child never passes for its parent.
_instances: dict[int, str] = {}


@dataclass(frozen=True, slots=True)
class RunOwner:
    """A process that executes runs: unique ``instance`` per process start, plus where it runs."""

    instance: str
    host: str
    pid: int

    @property
    def label(self) -> str:
        return f"{self.host}:{self.pid}"


def this_process() -> RunOwner:
    """The owner identity of the calling process."""
    pid = os.getpid()
    instance = _instances.setdefault(pid, str(uuid.uuid4()))
    return RunOwner(instance=instance, host=socket.gethostname()[:255], pid=pid)


def claim_run(run: ScanRun, owner: RunOwner, *, now: datetime | None = None) -> None:
    """Make ``owner`` the run's owner with a fresh lease. A cancel request already recorded
    stays: the owner's first heartbeat honours it."""
    run.owner_instance = owner.instance
    run.owner_host = owner.host
    run.owner_pid = owner.pid
    run.heartbeat_at = now or utcnow()


@dataclass(frozen=True, slots=True)
class Renewal:
    """What a heartbeat learned: whether the run is still ours, and a cancel request if any."""

    owned: bool
    cancel_requested_by: str | None = None


def renew_lease(
    engine: Engine, scan_run_id: str, owner: RunOwner, *, now: datetime | None = None
) -> Renewal:
    """Renew the owner's lease; ``owned=False`` when the run finished or another process closed
    or took it (the owner must stop at once: its results are no longer the run's). A store
    that does not answer fails it after the engine's stall deadline (``store_links``)."""
    with store_deadline(engine, "renew a run's lease"), session_scope(engine) as session:
        renewed = session.execute(
            update(ScanRun)
            .where(col(ScanRun.id) == scan_run_id)
            .where(col(ScanRun.owner_instance) == owner.instance)
            .where(col(ScanRun.finished_at).is_(None))
            .values(heartbeat_at=now or utcnow())
        )
        if renewed.rowcount != 1:  # type: ignore[attr-defined]
            return Renewal(owned=False)
        requested = session.exec(
            select(ScanRun.cancel_requested_at, ScanRun.cancel_requested_by).where(
                ScanRun.id == scan_run_id
            )
        ).one()
    at, by = requested
    return Renewal(owned=True, cancel_requested_by=(by or "someone") if at is not None else None)


def request_cancel(session: Session, run: ScanRun, *, by: str) -> None:
    """Record a cancel request on an unfinished run; its owner sees it at the next heartbeat."""
    if run.cancel_requested_at is None:
        run.cancel_requested_at = utcnow()
        run.cancel_requested_by = by[:100]
        session.add(run)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, another user's
    return True


def owner_gone(run: ScanRun, *, now: datetime, lease_s: float, me: RunOwner) -> str | None:
    """Why the run's owner is gone, or None while it may still be alive.

    Runs without an owner (a site sensor's, or created and not claimed yet) are not judged here.
    The caller's own runs are alive by definition: this process is the one asking.
    """
    if run.owner_instance is None or run.owner_instance == me.instance:
        return None
    who = f"{run.owner_host}:{run.owner_pid}"
    same_host = run.owner_host == me.host and run.owner_pid is not None
    if same_host and (run.owner_pid == me.pid or not _pid_alive(run.owner_pid or 0)):
        return f"its owner process {who} is gone"
    beat = run.heartbeat_at or run.started_at or run.created_at
    if now - beat > timedelta(seconds=lease_s):
        return f"no heartbeat from its owner {who} since {beat.isoformat()} (lease {lease_s:g} s)"
    return None


def ended_event_kind(status: ScanStatus) -> EventKind:
    """The event a run ending in ``status`` records."""
    if status is ScanStatus.FAILED:
        return EventKind.SCAN_FAILED
    if status in (ScanStatus.INTERRUPTED, ScanStatus.CANCELLED):
        return EventKind.SCAN_INTERRUPTED
    return EventKind.SCAN_FINISHED


def record_run_end(session: Session, run: ScanRun) -> None:
    """Count a run that ended and tell the event log (its status, why, and its counters):
    alerting's outbox.

    One event whoever ends the run, its owner (``recording.finish_run``) or whoever closes it
    for an owner that is gone (:func:`close_abandoned_run`)."""
    count_run_ended(session, run)
    record_event(
        session,
        ended_event_kind(run.status),
        payload={
            "status": str(run.status),
            "reason": run.reason,
            "targets": run.targets[:50],
            "hosts_probed": run.hosts_probed,
            "findings": run.findings,
            "errors": len(run.errors),
        },
        subject_id=run.id,
        scan_run_id=run.id,
        organization_id=run.organization_id,
        site_id=run.site_id,
    )


def claim_run_end(
    session: Session, scan_run_id: str, now: datetime, *also: ColumnElement[bool]
) -> ScanRun | None:
    """Mark the run ended at ``now`` unless it already is (and while ``also`` holds): the run,
    as the store now holds it, when this transaction ended it; None otherwise. Only the closer
    that gets the run writes its end and counts it (:func:`record_run_end`).

    A conditional ``UPDATE ... WHERE finished_at IS NULL``: of two closers racing (the owner
    and the reaper, the service runner and the pipeline) exactly one matches the row. A read
    first, then a plain update, let both end the run, the second overwriting the first's status
    and the "runs ended" metric counting it twice (on PostgreSQL the second waits for the
    first's row lock, then matches nothing here)."""
    claim = (
        update(ScanRun)
        .where(col(ScanRun.id) == scan_run_id)
        .where(col(ScanRun.finished_at).is_(None))
        .where(*also)
        .values(finished_at=now)
    )
    if session.execute(claim).rowcount != 1:  # type: ignore[attr-defined]
        return None
    return session.get(ScanRun, scan_run_id, populate_existing=True)


def close_abandoned_run(
    session: Session, run: ScanRun, *, status: ScanStatus, reason: str, now: datetime
) -> None:
    """End a run nobody executes any more with ``status`` and ``reason``; its counters stay what
    its owner last wrote (each batch it stored is kept whole)."""
    run.status = status
    run.finished_at = now
    run.reason = reason[:500]
    # Reassign (not append): JSON columns only notice a new value.
    run.errors = [*run.errors, {"target": None, "stage": "run", "error": reason[:500]}]
    session.add(run)
    record_run_end(session, run)


def _close_if_unchanged(
    engine: Engine, seen: ScanRun, *, status: ScanStatus, reason: str, now: datetime
) -> bool:
    """Close ``seen`` unless its owner renewed, another process closed it, or it changed hands
    since it was read (a conditional update: exactly one closer wins)."""
    with store_deadline(engine, "close an abandoned run"), session_scope(engine) as session:
        run = claim_run_end(
            session,
            seen.id,
            now,
            col(ScanRun.owner_instance) == seen.owner_instance,
            col(ScanRun.heartbeat_at).is_(None)
            if seen.heartbeat_at is None
            else col(ScanRun.heartbeat_at) == seen.heartbeat_at,
        )
        if run is None:
            return False
        close_abandoned_run(session, run, status=status, reason=reason, now=now)
    return True


def reap_orphaned_runs(
    engine: Engine, *, lease_s: float, me: RunOwner | None = None, now: datetime | None = None
) -> list[str]:
    """Close ``interrupted`` every unfinished run whose owner is gone; returns their ids.

    ``now`` is the wall clock by default, never a test's simulated one: heartbeats carry real time.
    """
    me = me or this_process()
    now = now or utcnow()
    # Each unit under the stall deadline (store_links): a store gone silent fails start-up
    # reaping and the reaper of ``serve`` with a lost connection, never hangs them.
    with store_deadline(engine, "find orphaned runs"), session_scope(engine) as session:
        candidates: Sequence[ScanRun] = session.exec(
            select(ScanRun)
            .where(col(ScanRun.finished_at).is_(None))
            .where(col(ScanRun.owner_instance).is_not(None))
        ).all()
    reaped: list[str] = []
    for run in candidates:
        why = owner_gone(run, now=now, lease_s=lease_s, me=me)
        if why is None:
            continue
        reason = f"interrupted: {why}"
        if _close_if_unchanged(engine, run, status=ScanStatus.INTERRUPTED, reason=reason, now=now):
            logger.warning(
                "scan run interrupted: owner gone", extra={"scan_run_id": run.id, "reason": why}
            )
            reaped.append(run.id)
    return reaped


def reap_before_starting(engine: Engine, runs: RunSettings) -> list[str]:
    """What a process that executes runs does first (``scan``, ``listen``): close the runs a
    killed scan, session or service left behind, transient store errors retried for
    ``runs.store_retry_s``."""
    return retry_transient(
        lambda: reap_orphaned_runs(engine, lease_s=runs.lease_s),
        horizon_s=runs.store_retry_s,
        what="close orphaned runs",
    )


def cancel_unowned(engine: Engine, scan_run_id: str, *, by: str, lease_s: float) -> ScanRun | None:
    """Cancel at once a run no live process executes (queued and never claimed, or its owner
    gone); None when a live owner holds it (the request then waits for its heartbeat)."""
    me = this_process()
    now = utcnow()
    # Under the stall deadline (store_links), as its close: a silent store fails the request.
    with store_deadline(engine, "read a run to cancel"), session_scope(engine) as session:
        run = session.get(ScanRun, scan_run_id)
        if run is None or run.finished_at is not None:
            return run
        never_started = run.owner_instance is None and run.status is ScanStatus.QUEUED
        gone = owner_gone(run, now=now, lease_s=lease_s, me=me)
        if not never_started and gone is None:
            request_cancel(session, run, by=by)
            return None
    why = "it had not started" if never_started else gone
    reason = f"cancelled by {by[:100]} ({why})"
    if not _close_if_unchanged(engine, run, status=ScanStatus.CANCELLED, reason=reason, now=now):
        return None  # its owner renewed or finished meanwhile: the recorded request stands
    with store_deadline(engine, "read a cancelled run"), session_scope(engine) as session:
        return session.get(ScanRun, scan_run_id)
