"""Resuming an interrupted run: the durable record of the hosts it finished, and reopening it.

Each batch of hosts a run stores also writes one :class:`ScanRunHost` per host, in the same
transaction: a host is either stored with its record or not at all, whatever kills the process.
A resumed run is the same row executed again: it keeps its ``started_at`` (absence counts what
was not seen since the run began), skips the finished hosts (not even swept again) and starts its
counters, errors, what was sent and its clean devices from their records, so its end equals that
of a run never interrupted.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, update
from sqlmodel import Session, col, select

from cybermission.db import insert_values, new_id, session_scope, utcnow
from cybermission.errors import ConflictError
from cybermission.probes import SentRequests
from cybermission.scans.models import ScanRun, ScanRunHost, ScanStatus
from cybermission.scans.ownership import (
    RunOwner,
    claim_run,
    owner_gone,
    reap_orphaned_runs,
    this_process,
)
from cybermission.scans.probing import HostReport
from cybermission.scans.service import get_scan_run_or_raise
from cybermission.store_links import store_deadline

if TYPE_CHECKING:
    from cybermission.scans.recording import RunState

logger = logging.getLogger(__name__)


def record_finished_hosts(
    session: Session, scan_run_id: str, reports: Sequence[HostReport], device_ids: Sequence[str]
) -> None:
    """Record ``reports`` as finished in the caller's transaction (the one storing them)."""
    insert_values(
        session,
        ScanRunHost,
        [
            {
                "id": new_id(),
                "scan_run_id": scan_run_id,
                "address": report.address,
                "device_id": device_id,
                "open_ports": len(report.open_ports),
                "errors": list(report.errors),
                "sent": report.sent.to_json(),
            }
            for report, device_id in zip(reports, device_ids, strict=True)
        ],
    )


def skip_recorded_hosts(
    session: Session, state: "RunState", reports: Sequence[HostReport]
) -> list[HostReport]:
    """``reports`` but the hosts the run already recorded (a batch written again after its
    commit's answer was lost); the state takes their clean devices and the run row's counters,
    which were written with them."""
    if not reports:
        return []
    recorded = session.exec(
        select(ScanRunHost)
        .where(ScanRunHost.scan_run_id == state.run_id)
        .where(col(ScanRunHost.address).in_([r.address for r in reports]))
    ).all()
    if not recorded:
        return list(reports)
    known = {host.address for host in recorded}
    state.clean_devices |= {h.device_id for h in recorded if h.device_id and not h.errors}
    run = session.get(ScanRun, state.run_id)
    if run is not None:
        state.progress.observations, state.progress.findings = run.observations, run.findings
    logger.warning(
        "hosts already stored skipped", extra={"scan_run_id": state.run_id, "hosts": len(known)}
    )
    return [r for r in reports if r.address not in known]


@dataclass(slots=True)
class FinishedHosts:
    """What the hosts a run finished before it was interrupted add up to."""

    addresses: frozenset[str] = frozenset()
    clean_devices: set[str] = field(default_factory=set)
    errors: list[dict[str, Any]] = field(default_factory=list)
    sent: SentRequests = field(default_factory=SentRequests)
    open_ports: int = 0

    def __len__(self) -> int:
        return len(self.addresses)


def finished_hosts(session: Session, scan_run_id: str) -> FinishedHosts:
    """The hosts ``scan_run_id`` finished, in the order it stored them."""
    rows = session.exec(select(ScanRunHost).where(ScanRunHost.scan_run_id == scan_run_id)).all()
    done = FinishedHosts(addresses=frozenset(row.address for row in rows))
    for row in rows:
        if row.device_id is not None and not row.errors:
            done.clean_devices.add(row.device_id)
        done.errors.extend(row.errors)
        done.open_ports += row.open_ports
        done.sent.add(SentRequests.from_json(row.sent))
    return done


def reopen_run(
    engine: Engine,
    scan_run_id: str,
    *,
    by: str,
    lease_s: float,
    owner: RunOwner | None = None,
    visible_to: str | None = None,
) -> ScanRun:
    """Make an interrupted run queued again, to be executed by ``owner`` (who then resumes it).

    A run still ``running`` whose owner is gone is closed ``interrupted`` first (a ``kill -9``
    noticed now). Raises ``NotFoundError`` for no such run (or one ``visible_to`` cannot see)
    and ``ConflictError`` when the run is not interrupted: running in a live process, or
    finished otherwise (succeeded, partial, failed, cancelled: nothing to resume).
    """
    # Each read and write under the stall deadline (store_links): never a hang.
    with store_deadline(engine, "read a run to resume"), session_scope(engine) as session:
        run = get_scan_run_or_raise(
            session=session,
            scan_run_id=scan_run_id,
            visible_to=visible_to,
        )
        gone = owner_gone(run, now=utcnow(), lease_s=lease_s, me=this_process())
    if run.finished_at is None and gone is not None:
        reap_orphaned_runs(engine, lease_s=lease_s)
    with store_deadline(engine, "reopen a run"), session_scope(engine) as session:
        run = get_scan_run_or_raise(
            session=session,
            scan_run_id=scan_run_id,
            visible_to=visible_to,
        )
        reopen(session, run, by=by, owner=owner)
    return run


def reopen(session: Session, run: ScanRun, *, by: str, owner: RunOwner | None = None) -> None:
    """Make the interrupted ``run`` queued again in the caller's transaction (``owner``: who will
    execute it); ``ConflictError`` when it is not interrupted.

    A conditional update: of two processes resuming the same run, exactly one wins.
    """
    if not run.ports:
        # A passive run (a listening session, a capture import) probed nothing: an active run
        # always has ports (validate_ports), and resuming this one would "scan" its source.
        source = run.targets[0] if run.targets else "a passive source"
        raise ConflictError(
            f"scan run {run.id!r} recorded {source}, which is heard, not probed: nothing to "
            "resume; start a new session"
        )
    won = session.execute(
        update(ScanRun)
        .where(col(ScanRun.id) == run.id)
        .where(col(ScanRun.status) == ScanStatus.INTERRUPTED)
        .values(status=ScanStatus.QUEUED)
    )
    if won.rowcount != 1:  # type: ignore[attr-defined]
        session.refresh(run)
        if run.finished_at is None:
            where = f" by {run.owner_host}:{run.owner_pid}" if run.owner_host else ""
            state = f"is still {run.status}{where}"
        else:
            state = f"ended {run.status}; only an interrupted run can be resumed"
        raise ConflictError(f"scan run {run.id!r} {state}")
    run.status = ScanStatus.QUEUED
    run.finished_at = None
    run.reason = None
    # Rebuilt at the end from the finished hosts' records and what the resumed part meets.
    run.errors = []
    run.cancel_requested_at = None
    run.cancel_requested_by = None
    run.owner_instance = run.owner_host = None
    run.owner_pid = None
    run.heartbeat_at = None
    run.resumes += 1
    if owner is not None:
        claim_run(run, owner)
    session.add(run)
    logger.info(
        "scan run reopened to resume",
        extra={"scan_run_id": run.id, "by": by, "resumes": run.resumes},
    )
