"""Run ownership: leases, the reaping of runs whose owner is gone, cancel from any process, and
schedules never blocked by a dead run."""

import subprocess
import sys
from datetime import timedelta

from sqlalchemy import Engine
from sqlmodel import select

from cybermission.config import Settings
from cybermission.db import session_scope, utcnow
from cybermission.events import Event, EventKind
from cybermission.scans.models import ScanRun, ScanStatus
from cybermission.scans.ownership import (
    RunOwner,
    _close_if_unchanged,
    cancel_unowned,
    claim_run,
    reap_orphaned_runs,
    renew_lease,
    request_cancel,
    this_process,
)
from cybermission.scans.schedules import RunOutcome, ScheduleRun, tick
from tests.scans.test_schedules import T0, _create

LEASE_S = 60.0


def _dead_pid() -> int:
    """The pid of a process of this host that has exited (and been waited for)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _run(engine: Engine, owner: RunOwner | None, *, beat_age_s: float = 0.0) -> str:
    with session_scope(engine) as session:
        run = ScanRun(targets=["127.50.0.1"], ports=[502], status=ScanStatus.RUNNING)
        if owner is not None:
            claim_run(run, owner, now=utcnow() - timedelta(seconds=beat_age_s))
        session.add(run)
        session.flush()
        return run.id


def _get(engine: Engine, run_id: str) -> ScanRun:
    with session_scope(engine) as session:
        run = session.get(ScanRun, run_id)
        assert run is not None
        return run


def _other_host(beat: str = "x") -> RunOwner:
    return RunOwner(instance=f"00000000-0000-0000-0000-00000000000{beat}", host="elsewhere", pid=1)


def test_reaper_closes_a_run_whose_owner_process_died(engine: Engine) -> None:
    me = this_process()
    dead = RunOwner(instance="11111111-1111-1111-1111-111111111111", host=me.host, pid=_dead_pid())
    run_id = _run(engine, dead)
    assert reap_orphaned_runs(engine, lease_s=LEASE_S) == [run_id]
    run = _get(engine, run_id)
    assert run.status is ScanStatus.INTERRUPTED
    assert run.finished_at is not None
    assert run.reason is not None
    assert f"{me.host}:{dead.pid} is gone" in run.reason
    with session_scope(engine) as session:
        [event] = session.exec(select(Event).where(Event.scan_run_id == run_id)).all()
    assert event.kind is EventKind.SCAN_INTERRUPTED
    assert event.payload["status"] == "interrupted"


def test_reaper_closes_a_run_whose_heartbeat_is_older_than_the_lease(engine: Engine) -> None:
    run_id = _run(engine, _other_host(), beat_age_s=LEASE_S + 5)
    assert reap_orphaned_runs(engine, lease_s=LEASE_S) == [run_id]
    run = _get(engine, run_id)
    assert run.status is ScanStatus.INTERRUPTED
    assert run.reason is not None
    assert "no heartbeat from its owner elsewhere:1" in run.reason


def test_reaper_leaves_live_and_unowned_runs(engine: Engine) -> None:
    fresh = _run(engine, _other_host(), beat_age_s=1)
    mine = _run(engine, this_process(), beat_age_s=LEASE_S * 10)
    unowned = _run(engine, None)  # a site sensor's run: its chunks have their own deadlines
    assert reap_orphaned_runs(engine, lease_s=LEASE_S) == []
    for run_id in (fresh, mine, unowned):
        assert _get(engine, run_id).status is ScanStatus.RUNNING


def test_reaper_loses_to_a_heartbeat_renewed_after_it_read_the_run(engine: Engine) -> None:
    owner = _other_host()
    run_id = _run(engine, owner, beat_age_s=LEASE_S + 5)
    seen = _get(engine, run_id)  # what a reaper read: an expired lease
    assert renew_lease(engine, run_id, owner).owned  # the owner was only slow
    closed = _close_if_unchanged(
        engine, seen, status=ScanStatus.INTERRUPTED, reason="interrupted: test", now=utcnow()
    )
    assert not closed
    assert _get(engine, run_id).status is ScanStatus.RUNNING


def test_heartbeat_of_a_reaped_run_tells_its_owner_to_stop(engine: Engine) -> None:
    owner = _other_host()
    run_id = _run(engine, owner, beat_age_s=LEASE_S + 5)
    assert renew_lease(engine, run_id, owner).owned
    stale = _run(engine, owner, beat_age_s=LEASE_S + 5)
    reap_orphaned_runs(engine, lease_s=LEASE_S)
    assert not renew_lease(engine, stale, owner).owned
    assert _get(engine, stale).status is ScanStatus.INTERRUPTED


def test_cancel_request_reaches_the_owner_on_its_heartbeat(engine: Engine) -> None:
    owner = _other_host()
    run_id = _run(engine, owner)
    assert renew_lease(engine, run_id, owner).cancel_requested_by is None
    assert cancel_unowned(engine, run_id, by="alice", lease_s=LEASE_S) is None  # a live owner
    renewal = renew_lease(engine, run_id, owner)
    assert renewal.owned
    assert renewal.cancel_requested_by == "alice"
    assert _get(engine, run_id).status is ScanStatus.RUNNING  # the owner decides when it stops


def test_cancel_of_a_run_whose_owner_is_gone_closes_it_at_once(engine: Engine) -> None:
    run_id = _run(engine, _other_host(), beat_age_s=LEASE_S + 5)
    run = cancel_unowned(engine, run_id, by="alice", lease_s=LEASE_S)
    assert run is not None
    assert run.status is ScanStatus.CANCELLED
    assert run.reason is not None
    assert run.reason.startswith("cancelled by alice (no heartbeat")


def test_cancel_of_a_queued_run_never_started_closes_it_at_once(engine: Engine) -> None:
    with session_scope(engine) as session:
        queued = ScanRun(targets=["127.50.0.1"], ports=[502])
        session.add(queued)
        session.flush()
        run_id = queued.id
    run = cancel_unowned(engine, run_id, by="bob", lease_s=LEASE_S)
    assert run is not None
    assert run.status is ScanStatus.CANCELLED
    assert run.reason == "cancelled by bob (it had not started)"


def test_request_cancel_keeps_the_first_requester(engine: Engine) -> None:
    run_id = _run(engine, _other_host())
    for who in ("alice", "bob"):
        with session_scope(engine) as session:
            run = session.get(ScanRun, run_id)
            assert run is not None
            request_cancel(session, run, by=who)
    assert _get(engine, run_id).cancel_requested_by == "alice"


def test_a_dead_run_never_blocks_its_schedule(engine: Engine, settings: Settings) -> None:
    # The start-over policy (test_resume.py has the default, resuming the dead run instead).
    settings = settings.model_copy(
        update={"runs": settings.runs.model_copy(update={"scheduled_resumes": 0})}
    )
    _create(engine, settings, interval_s=3600)
    [first] = tick(engine, settings=settings, now=T0 + timedelta(hours=1)).launched
    # Its owner was killed (kill -9): same host, the pid is gone.
    dead = RunOwner(
        instance="22222222-2222-2222-2222-222222222222", host=this_process().host, pid=_dead_pid()
    )
    with session_scope(engine) as session:
        run = session.get(ScanRun, first)
        assert run is not None
        run.status = ScanStatus.RUNNING
        claim_run(run, dead)
        session.add(run)
    assert len(tick(engine, settings=settings, now=T0 + timedelta(hours=2)).launched) == 1
    assert _get(engine, first).status is ScanStatus.INTERRUPTED
    with session_scope(engine) as session:
        outcomes = [r.outcome for r in session.exec(select(ScheduleRun)).all()]
    assert RunOutcome.SKIPPED_OVERLAP not in outcomes


def test_a_live_run_still_absorbs_the_next_time(engine: Engine, settings: Settings) -> None:
    _create(engine, settings, interval_s=3600)
    [first] = tick(engine, settings=settings, now=T0 + timedelta(hours=1)).launched
    with session_scope(engine) as session:
        run = session.get(ScanRun, first)
        assert run is not None
        claim_run(run, _other_host())  # alive elsewhere, heartbeat fresh
        session.add(run)
    assert tick(engine, settings=settings, now=T0 + timedelta(hours=2)).launched == []
    assert _get(engine, first).finished_at is None
