"""The scheduler runner: one process per store (the lock), schedules kept across a restart, and
APScheduler really driving the ticks."""

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text
from sqlmodel import select

from cybermission.config import Settings
from cybermission.db import session_scope
from cybermission.locks import ProcessLock
from cybermission.scans.models import ScopeBase
from cybermission.scans.scheduler import ScheduleRunner
from cybermission.scans.schedules import (
    RunOutcome,
    Schedule,
    ScheduleBase,
    ScheduleRun,
    TickReport,
    create_schedule,
    tick,
)
from cybermission.scans.scopes import create_scope
from tests.timing import scaled

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _schedules(engine: Engine, settings: Settings, names: list[str], now: datetime = T0) -> None:
    with session_scope(engine) as session:
        scope = create_scope(session, data=ScopeBase(name="lab", cidrs=["127.24.2.0/24"]))
        for name in names:
            create_schedule(
                session,
                data=ScheduleBase(name=name, scope_id=scope.id, interval_s=3600, ports=[502]),
                settings=settings,
                actor="alice",
                now=now,
            )


def test_process_lock_has_one_holder(engine: Engine) -> None:
    first, second = ProcessLock(engine, "test-lock"), ProcessLock(engine, "test-lock")
    assert first.acquire()
    assert not second.acquire()
    first.release()
    assert second.acquire()
    second.release()


def test_second_runner_does_not_fire_while_the_first_holds_the_lock(
    engine: Engine, settings: Settings
) -> None:
    _schedules(engine, settings, ["a"])
    clock = Clock(T0 + timedelta(hours=1))
    fired: list[str] = []
    first = ScheduleRunner(engine, settings=settings, launch=fired.append, now=clock)
    second = ScheduleRunner(engine, settings=settings, launch=fired.append, now=clock)
    try:
        assert first.tick_once() is not None
        assert second.tick_once() is None
        assert first.is_leader
        assert not second.is_leader
    finally:
        first.stop()
        second.stop()
    assert len(fired) == 1


def test_schedules_survive_a_restart(engine: Engine, settings: Settings) -> None:
    _schedules(engine, settings, ["a", "b", "c"])
    fired: list[str] = []
    before = ScheduleRunner(
        engine, settings=settings, launch=fired.append, now=Clock(T0 + timedelta(minutes=30))
    )
    report = before.tick_once()
    assert report is not None
    assert report.launched == []
    before.stop()  # the service stops; nothing is kept in memory
    after = ScheduleRunner(
        engine, settings=settings, launch=fired.append, now=Clock(T0 + timedelta(hours=1))
    )
    try:
        report = after.tick_once()
    finally:
        after.stop()
    assert report is not None
    assert len(report.launched) == 3
    assert sorted(fired) == sorted(report.launched)
    with session_scope(engine) as session:
        runs = session.exec(select(ScheduleRun)).all()
    assert {r.outcome for r in runs} == {RunOutcome.STARTED}


def test_runner_fires_from_apscheduler(sqlite_engine: Engine, settings: Settings) -> None:
    # Created an hour and a bit ago: due a few seconds ago, so the first real tick starts it.
    _schedules(
        sqlite_engine, settings, ["late"], now=datetime.now(UTC) - timedelta(hours=1, seconds=5)
    )
    fired = threading.Event()
    launched: list[str] = []

    def launch(scan_run_id: str) -> None:
        launched.append(scan_run_id)
        fired.set()

    runner = ScheduleRunner(sqlite_engine, settings=settings, launch=launch, tick_s=0.1)
    runner.start()
    try:
        assert fired.wait(10)
    finally:
        runner.stop()
    assert len(launched) == 1
    assert not runner.is_leader  # stopping releases the lock for the next service


def _lose_lock(engine: Engine, lock: ProcessLock) -> None:
    """What a lost PostgreSQL connection (or a removed lock file) does to a held lock."""
    if engine.dialect.name == "postgresql":
        assert lock._connection is not None
        pid = lock._connection.execute(text("SELECT pg_backend_pid()")).scalar()
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            # pg_terminate_backend only signals the backend; its locks go when it has exited,
            # which a loaded machine can delay past the next statement.
            deadline = time.monotonic() + scaled(30)
            while True:
                connection.rollback()  # pg_stat_activity is read once per transaction
                alive = connection.execute(
                    text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
                ).scalar()
                if not alive:
                    break
                assert time.monotonic() < deadline, f"backend {pid} still alive"
                time.sleep(0.05)
    else:
        assert lock._path is not None
        lock._path.unlink()


def test_a_lost_lock_is_released_quietly_and_taken_by_the_next(engine: Engine) -> None:
    """A service stopping after its lock's connection was lost must stop cleanly (the server
    already let the lock go), and another holder takes it."""
    first, second = ProcessLock(engine, "test-lost-lock"), ProcessLock(engine, "test-lost-lock")
    assert first.acquire()
    _lose_lock(engine, first)
    first.release()
    assert not first.held
    try:
        assert second.acquire()
    finally:
        second.release()


def test_leader_that_lost_its_lock_stops_deciding(engine: Engine, settings: Settings) -> None:
    _schedules(engine, settings, ["a"])
    fired: list[str] = []
    first = ScheduleRunner(engine, settings=settings, launch=fired.append, now=Clock(T0))
    second = ScheduleRunner(
        engine, settings=settings, launch=fired.append, now=Clock(T0 + timedelta(hours=1))
    )
    try:
        assert first.tick_once() is not None
        _lose_lock(engine, first._lock)
        # The other service takes over; the old leader re-checks and stands down.
        assert second.tick_once() is not None
        assert second.is_leader
        first._now = Clock(T0 + timedelta(hours=1))
        assert first.tick_once() is None
        assert not first.is_leader
    finally:
        first.stop()
        second.stop()
    assert len(fired) == 1  # the due run was launched once, by the new leader


@pytest.mark.postgres
def test_a_schedule_being_decided_is_never_decided_twice(
    engine: Engine, settings: Settings
) -> None:
    """A leader cut mid-decision and its successor: the successor's tick waits for the first
    decision to commit, then finds the schedule no longer due (its row is locked meanwhile)."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer: its file lock already serialises the ticks")
    _schedules(engine, settings, ["a"])
    due = T0 + timedelta(hours=1)
    report: list[TickReport] = []
    with session_scope(engine) as first:
        # The old leader, mid-decision: it holds the schedule's row.
        schedule = first.exec(select(Schedule).with_for_update()).one()
        successor = threading.Thread(
            target=lambda: report.append(tick(engine, settings=settings, now=due))
        )
        successor.start()
        successor.join(timeout=1.0)
        assert successor.is_alive()  # waiting for the row, not deciding beside the first
        schedule.next_due_at = due + timedelta(hours=1)  # what the first decision writes
        first.add(schedule)
    successor.join(timeout=scaled(30))
    assert not successor.is_alive()
    assert report[0].launched == []
