"""Reopening an interrupted run to resume it: who may, what is refused, and the schedule policy
(an interrupted scheduled run is resumed by the next tick instead of starting over)."""

import threading
from datetime import timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import col, select

from cybermission.config import Settings
from cybermission.db import session_scope, utcnow
from cybermission.errors import ConflictError, NotFoundError
from cybermission.scans.models import ScanRun, ScanStatus
from cybermission.scans.ownership import RunOwner, claim_run, this_process
from cybermission.scans.resume import reopen_run
from cybermission.scans.schedules import RunOutcome, RunTrigger, ScheduleRun, tick
from tests.scans.test_ownership import _dead_pid, _get, _other_host, _run
from tests.scans.test_schedules import T0, _create

LEASE_S = 60.0


def _interrupt(engine: Engine, run_id: str, *, resumes: int = 0) -> None:
    with session_scope(engine) as session:
        run = session.get(ScanRun, run_id)
        assert run is not None
        run.status = ScanStatus.INTERRUPTED
        run.started_at = run.started_at or utcnow()
        run.finished_at = utcnow()
        run.reason = "interrupted: SIGTERM received"
        run.errors = [{"target": None, "stage": "run", "error": run.reason}]
        run.resumes = resumes
        claim_run(run, _other_host())
        session.add(run)


def test_reopen_makes_an_interrupted_run_queued_for_its_new_owner(engine: Engine) -> None:
    run_id = _run(engine, _other_host())
    _interrupt(engine, run_id)
    me = this_process()
    reopen_run(engine, run_id, by="alice", lease_s=LEASE_S, owner=me)
    run = _get(engine, run_id)
    assert run.status is ScanStatus.QUEUED
    assert (run.finished_at, run.reason, run.errors) == (None, None, [])
    assert (run.owner_instance, run.resumes) == (me.instance, 1)
    assert run.started_at is not None  # kept: absence counts from the run's first start


@pytest.mark.parametrize(
    "status", [ScanStatus.SUCCEEDED, ScanStatus.PARTIAL, ScanStatus.FAILED, ScanStatus.CANCELLED]
)
def test_reopen_refuses_a_run_that_ended_otherwise(engine: Engine, status: ScanStatus) -> None:
    run_id = _run(engine, _other_host())
    with session_scope(engine) as session:
        run = session.get(ScanRun, run_id)
        assert run is not None
        run.status, run.finished_at = status, utcnow()
        session.add(run)
    with pytest.raises(ConflictError, match="only an interrupted run can be resumed"):
        reopen_run(engine, run_id, by="alice", lease_s=LEASE_S)
    assert _get(engine, run_id).status is status


def test_reopen_refuses_an_interrupted_passive_run(engine: Engine) -> None:
    """A listening session killed mid-way is closed interrupted, but there is nothing to probe
    again: resuming it must not start a scan of its source."""
    with session_scope(engine) as session:
        run = ScanRun(targets=["listen:veth-site"], ports=[], status=ScanStatus.RUNNING)
        session.add(run)
        session.flush()
        run_id = run.id
    _interrupt(engine, run_id)
    with pytest.raises(ConflictError, match="listen:veth-site, which is heard, not probed"):
        reopen_run(engine, run_id, by="alice", lease_s=LEASE_S)
    assert _get(engine, run_id).status is ScanStatus.INTERRUPTED


def test_reopen_refuses_a_run_its_live_owner_executes(engine: Engine) -> None:
    run_id = _run(engine, _other_host())  # heartbeat fresh: alive elsewhere
    with pytest.raises(ConflictError, match="is still running by elsewhere:1"):
        reopen_run(engine, run_id, by="alice", lease_s=LEASE_S)
    assert _get(engine, run_id).status is ScanStatus.RUNNING


def test_reopen_closes_a_run_whose_owner_died_then_resumes_it(engine: Engine) -> None:
    dead = RunOwner(
        instance="33333333-3333-3333-3333-333333333333", host=this_process().host, pid=_dead_pid()
    )
    run_id = _run(engine, dead)  # kill -9 left it "running"
    reopen_run(engine, run_id, by="alice", lease_s=LEASE_S, owner=this_process())
    run = _get(engine, run_id)
    assert (run.status, run.resumes) == (ScanStatus.QUEUED, 1)


def test_reopen_of_no_run_or_another_organisations_is_not_found(engine: Engine) -> None:
    with pytest.raises(NotFoundError):
        reopen_run(engine, "no-such-run", by="alice", lease_s=LEASE_S)
    run_id = _run(engine, _other_host())
    _interrupt(engine, run_id)
    with pytest.raises(NotFoundError):
        reopen_run(engine, run_id, by="alice", lease_s=LEASE_S, visible_to="another-org")


def test_two_processes_resuming_one_run_only_one_wins(engine: Engine) -> None:
    run_id = _run(engine, _other_host())
    _interrupt(engine, run_id)
    outcomes: list[str] = []
    start = threading.Barrier(2)

    def resume() -> None:
        start.wait()
        try:
            reopen_run(engine, run_id, by="x", lease_s=LEASE_S)
            outcomes.append("resumed")
        except ConflictError:
            outcomes.append("refused")

    threads = [threading.Thread(target=resume) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["refused", "resumed"]
    assert _get(engine, run_id).resumes == 1


def _schedule_runs(engine: Engine) -> list[ScheduleRun]:
    with session_scope(engine) as session:
        return list(session.exec(select(ScheduleRun).order_by(col(ScheduleRun.decided_at))).all())


def test_tick_resumes_an_interrupted_scheduled_run_instead_of_starting_over(
    engine: Engine, settings: Settings
) -> None:
    _create(engine, settings, interval_s=3600)
    [first] = tick(engine, settings=settings, now=T0 + timedelta(hours=1)).launched
    _interrupt(engine, first)
    # The next tick, not the next due time: a restarted service picks the run up at once.
    report = tick(engine, settings=settings, now=T0 + timedelta(hours=1, minutes=1))
    assert report.launched == [first]
    run = _get(engine, first)
    assert (run.status, run.resumes, run.owner_instance) == (
        ScanStatus.QUEUED,
        1,
        this_process().instance,
    )
    resumed = _schedule_runs(engine)[-1]
    assert (resumed.trigger, resumed.outcome, resumed.scan_run_id) == (
        RunTrigger.RESUME,
        RunOutcome.STARTED,
        first,
    )
    assert "SIGTERM received" in resumed.reason
    # While it goes, the schedule's next time is absorbed as usual.
    assert tick(engine, settings=settings, now=T0 + timedelta(hours=2)).launched == []
    assert _schedule_runs(engine)[-1].outcome is RunOutcome.SKIPPED_OVERLAP


def test_tick_starts_over_once_the_run_was_resumed_enough(
    engine: Engine, settings: Settings
) -> None:
    _create(engine, settings, interval_s=3600)
    [first] = tick(engine, settings=settings, now=T0 + timedelta(hours=1)).launched
    _interrupt(engine, first, resumes=settings.runs.scheduled_resumes)
    assert tick(engine, settings=settings, now=T0 + timedelta(hours=1, minutes=1)).launched == []
    [fresh] = tick(engine, settings=settings, now=T0 + timedelta(hours=2)).launched
    assert fresh != first
    assert _get(engine, first).status is ScanStatus.INTERRUPTED


def test_tick_never_resumes_with_the_start_over_policy(engine: Engine, settings: Settings) -> None:
    settings = settings.model_copy(
        update={"runs": settings.runs.model_copy(update={"scheduled_resumes": 0})}
    )
    _create(engine, settings, interval_s=3600)
    [first] = tick(engine, settings=settings, now=T0 + timedelta(hours=1)).launched
    _interrupt(engine, first)
    assert tick(engine, settings=settings, now=T0 + timedelta(hours=1, minutes=1)).launched == []
    assert _get(engine, first).resumes == 0
