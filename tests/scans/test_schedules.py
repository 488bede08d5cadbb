"""Schedules: planning in the site's time zone, windows, blackouts, overlap, misfires, run-now and
the audit, all with a controlled clock (``now`` is passed in; nothing sleeps)."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import select

from cybermission.config import Settings
from cybermission.db import session_scope
from cybermission.errors import ScopeError, ValidationError
from cybermission.scans.models import ScanRun, ScanStatus, ScopeBase
from cybermission.scans.schedules import (
    Misfire,
    OutsideWindow,
    RunOutcome,
    ScanWindow,
    Schedule,
    ScheduleBase,
    ScheduleRun,
    create_schedule,
    delete_schedule,
    list_schedule_audit,
    run_schedule_now,
    tick,
    update_schedule,
)
from cybermission.scans.scopes import create_scope
from cybermission.sites.allocations import create_allocation
from cybermission.sites.models import Organization, Site

# Tuesday 2026-03-10 12:00 UTC = 13:00 in Paris (CET, UTC+1).
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
NIGHTS = [{"days": [0, 1, 2, 3, 4], "start": "01:00", "end": "05:00"}]


def _scope(engine: Engine) -> str:
    with session_scope(engine) as session:
        org = Organization(slug="water", name="Water works")
        session.add(org)
        session.flush()
        site = Site(organization_id=org.id, slug="plant-a", name="Plant A", timezone="Europe/Paris")
        session.add(site)
        session.flush()
        create_allocation(session, organization_id=org.id, cidr="127.24.0.0/16")
        scope = create_scope(
            session, data=ScopeBase(name="plant-a", cidrs=["127.24.1.0/24"], site_id=site.id)
        )
        return scope.id


def _create(engine: Engine, settings: Settings, now: datetime = T0, **fields: object) -> Schedule:
    scope_id = _scope(engine) if "scope_id" not in fields else fields.pop("scope_id")
    data = ScheduleBase.model_validate(
        {"name": "nightly", "scope_id": scope_id, "ports": [502], **fields}
    )
    with session_scope(engine) as session:
        return create_schedule(session, data=data, settings=settings, actor="alice", now=now)


def _runs(engine: Engine) -> list[ScheduleRun]:
    with session_scope(engine) as session:
        return list(session.exec(select(ScheduleRun).order_by(ScheduleRun.decided_at)).all())


def _finish_scans(engine: Engine) -> None:
    with session_scope(engine) as session:
        for run in session.exec(select(ScanRun)).all():
            run.status = ScanStatus.SUCCEEDED
            run.finished_at = T0
            session.add(run)


def test_schedule_cron_is_planned_in_site_timezone(engine: Engine, settings: Settings) -> None:
    schedule = _create(engine, settings, cron="0 2 * * *")
    # 02:00 in Paris on 2026-03-11 is 01:00 UTC.
    assert schedule.next_due_at == datetime(2026, 3, 11, 1, 0, tzinfo=UTC)


def test_schedule_cron_follows_daylight_saving(sqlite_engine: Engine, settings: Settings) -> None:
    # Paris moves to CEST (UTC+2) on 2026-03-29: 02:00 local is then 00:00 UTC.
    schedule = _create(
        sqlite_engine, settings, now=datetime(2026, 4, 1, 12, tzinfo=UTC), cron="0 2 * * *"
    )
    assert schedule.next_due_at == datetime(2026, 4, 2, 0, 0, tzinfo=UTC)


def test_schedule_targets_default_to_the_scope(sqlite_engine: Engine, settings: Settings) -> None:
    schedule = _create(sqlite_engine, settings, interval_s=3600)
    assert schedule.targets == ["127.24.1.0/24"]
    assert schedule.organization_id is not None


def test_schedule_refuses_targets_outside_its_scope(
    sqlite_engine: Engine, settings: Settings
) -> None:
    with pytest.raises(ScopeError):
        _create(sqlite_engine, settings, interval_s=3600, targets=["127.24.2.1"])


def test_schedule_refuses_a_bad_cron(sqlite_engine: Engine, settings: Settings) -> None:
    with pytest.raises(ValidationError, match="cron"):
        _create(sqlite_engine, settings, cron="61 * * * *")


def test_schedule_needs_cron_or_interval(sqlite_engine: Engine, settings: Settings) -> None:
    with pytest.raises(ValidationError, match="cron"):
        _create(sqlite_engine, settings)


def test_schedule_refuses_a_bad_window(sqlite_engine: Engine, settings: Settings) -> None:
    with pytest.raises(ValidationError, match=r"windows\[0\]"):
        _create(
            sqlite_engine,
            settings,
            interval_s=3600,
            windows=[{"days": [9], "start": "01:00", "end": "02:00"}],
        )


def test_tick_fires_a_due_schedule_and_links_the_scan_run(
    engine: Engine, settings: Settings
) -> None:
    schedule = _create(engine, settings, interval_s=3600)
    assert tick(engine, settings=settings, now=T0 + timedelta(minutes=59)).launched == []
    report = tick(engine, settings=settings, now=T0 + timedelta(minutes=60))
    [scan_id] = report.launched
    [run] = _runs(engine)
    assert run.outcome is RunOutcome.STARTED
    assert run.scan_run_id == scan_id
    with session_scope(engine) as session:
        scan = session.get(ScanRun, scan_id)
        again = session.get(Schedule, schedule.id)
    assert scan is not None
    assert scan.requested_by == "schedule:nightly"
    assert scan.ports == [502]
    assert again is not None
    assert again.next_due_at == T0 + timedelta(hours=2)


def test_tick_outside_window_waits_for_it_then_starts(engine: Engine, settings: Settings) -> None:
    _create(engine, settings, interval_s=3600, windows=NIGHTS)
    due = T0 + timedelta(hours=1)  # 14:00 in Paris, outside 01:00-05:00
    assert tick(engine, settings=settings, now=due).launched == []
    [run] = _runs(engine)
    assert run.outcome is RunOutcome.WAITING
    opening = datetime(2026, 3, 11, 0, 0, tzinfo=UTC)  # Wednesday 01:00 in Paris
    assert run.start_after == opening
    assert "outside its scan window" in run.reason
    assert "Europe/Paris" in run.reason
    # Hourly times before the window are skipped: one run already waits.
    tick(engine, settings=settings, now=due + timedelta(hours=1))
    assert [r.outcome for r in _runs(engine)] == [RunOutcome.WAITING, RunOutcome.SKIPPED_OVERLAP]
    report = tick(engine, settings=settings, now=opening)
    assert len(report.launched) == 1
    outcomes = sorted(str(r.outcome) for r in _runs(engine))
    assert outcomes.count("started") == 1
    assert "waiting" not in outcomes


def test_tick_outside_window_skip_says_why(sqlite_engine: Engine, settings: Settings) -> None:
    _create(
        sqlite_engine, settings, interval_s=3600, windows=NIGHTS, outside_window=OutsideWindow.SKIP
    )
    assert tick(sqlite_engine, settings=settings, now=T0 + timedelta(hours=1)).launched == []
    [run] = _runs(sqlite_engine)
    assert run.outcome is RunOutcome.SKIPPED_WINDOW
    assert run.reason.startswith("skipped: outside its scan window days 0,1,2,3,4 01:00-05:00")


def test_tick_inside_window_starts(sqlite_engine: Engine, settings: Settings) -> None:
    night = datetime(2026, 3, 11, 0, 30, tzinfo=UTC)  # 01:30 in Paris, Wednesday
    _create(
        sqlite_engine, settings, now=night - timedelta(hours=1), interval_s=3600, windows=NIGHTS
    )
    assert len(tick(sqlite_engine, settings=settings, now=night).launched) == 1


def test_tick_blackout_waits_until_it_ends(sqlite_engine: Engine, settings: Settings) -> None:
    blackout = {"start": "2026-03-10T12:00:00", "end": "2026-03-10T18:00:00", "reason": "freeze"}
    _create(sqlite_engine, settings, interval_s=3600, blackouts=[blackout])
    tick(sqlite_engine, settings=settings, now=T0 + timedelta(hours=1))
    [run] = _runs(sqlite_engine)
    assert run.outcome is RunOutcome.WAITING
    assert run.start_after == datetime(2026, 3, 10, 17, 0, tzinfo=UTC)  # 18:00 Paris
    assert "blackout (freeze)" in run.reason


def test_tick_blackout_skip_records_it(sqlite_engine: Engine, settings: Settings) -> None:
    blackout = {"start": "2026-03-10T00:00:00+00:00", "end": "2026-03-12T00:00:00+00:00"}
    _create(
        sqlite_engine,
        settings,
        interval_s=3600,
        blackouts=[blackout],
        outside_window=OutsideWindow.SKIP,
    )
    tick(sqlite_engine, settings=settings, now=T0 + timedelta(hours=1))
    [run] = _runs(sqlite_engine)
    assert run.outcome is RunOutcome.SKIPPED_BLACKOUT


def test_tick_never_overlaps_runs_of_one_schedule(engine: Engine, settings: Settings) -> None:
    _create(engine, settings, interval_s=3600)
    assert len(tick(engine, settings=settings, now=T0 + timedelta(hours=1)).launched) == 1
    assert tick(engine, settings=settings, now=T0 + timedelta(hours=2)).launched == []
    assert _runs(engine)[-1].outcome is RunOutcome.SKIPPED_OVERLAP
    _finish_scans(engine)
    assert len(tick(engine, settings=settings, now=T0 + timedelta(hours=3)).launched) == 1


def test_tick_misfire_run_once_collapses_missed_times(
    sqlite_engine: Engine, settings: Settings
) -> None:
    schedule = _create(sqlite_engine, settings, interval_s=3600, misfire_grace_s=60)
    late = T0 + timedelta(hours=5, minutes=30)  # five times missed while down
    assert len(tick(sqlite_engine, settings=settings, now=late).launched) == 1
    [run] = _runs(sqlite_engine)
    assert run.reason.startswith("catch-up of a run missed by")
    with session_scope(sqlite_engine) as session:
        again = session.get(Schedule, schedule.id)
    assert again is not None
    assert again.next_due_at == T0 + timedelta(hours=6)


def test_tick_misfire_skip_records_the_miss(sqlite_engine: Engine, settings: Settings) -> None:
    _create(sqlite_engine, settings, interval_s=3600, misfire=Misfire.SKIP, misfire_grace_s=60)
    assert tick(sqlite_engine, settings=settings, now=T0 + timedelta(hours=3)).launched == []
    [run] = _runs(sqlite_engine)
    assert run.outcome is RunOutcome.SKIPPED_MISFIRE
    assert "missed by 7200 s" in run.reason


def test_tick_ignores_disabled_schedules(sqlite_engine: Engine, settings: Settings) -> None:
    schedule = _create(sqlite_engine, settings, interval_s=3600)
    with session_scope(sqlite_engine) as session:
        update_schedule(
            session,
            schedule_id=schedule.id,
            changes={"enabled": False},
            settings=settings,
            actor="bob",
            now=T0,
        )
    assert tick(sqlite_engine, settings=settings, now=T0 + timedelta(days=1)).launched == []


def test_run_now_waives_the_window(sqlite_engine: Engine, settings: Settings) -> None:
    schedule = _create(sqlite_engine, settings, interval_s=3600, windows=NIGHTS)
    with session_scope(sqlite_engine) as session:
        run, scan_id = run_schedule_now(
            session, schedule_id=schedule.id, settings=settings, actor="op", now=T0
        )
    assert run.outcome is RunOutcome.STARTED
    assert scan_id is not None


def test_run_now_respects_blackouts(sqlite_engine: Engine, settings: Settings) -> None:
    blackout = {"start": "2026-03-10T00:00:00+00:00", "end": "2026-03-11T00:00:00+00:00"}
    schedule = _create(sqlite_engine, settings, interval_s=3600, blackouts=[blackout])
    with session_scope(sqlite_engine) as session:
        run, scan_id = run_schedule_now(
            session, schedule_id=schedule.id, settings=settings, actor="op", now=T0
        )
    assert run.outcome is RunOutcome.SKIPPED_BLACKOUT
    assert scan_id is None


def test_run_now_refuses_to_overlap(sqlite_engine: Engine, settings: Settings) -> None:
    schedule = _create(sqlite_engine, settings, interval_s=3600)
    with session_scope(sqlite_engine) as session:
        run_schedule_now(session, schedule_id=schedule.id, settings=settings, actor="op", now=T0)
    with session_scope(sqlite_engine) as session:
        run, scan_id = run_schedule_now(
            session, schedule_id=schedule.id, settings=settings, actor="op", now=T0
        )
    assert run.outcome is RunOutcome.SKIPPED_OVERLAP
    assert scan_id is None


def test_audit_records_who_changed_what(engine: Engine, settings: Settings) -> None:
    schedule = _create(engine, settings, interval_s=3600)
    with session_scope(engine) as session:
        update_schedule(
            session,
            schedule_id=schedule.id,
            changes={"interval_s": 7200, "ports": [502, 102]},
            settings=settings,
            actor="bob",
            now=T0 + timedelta(minutes=5),
        )
    with session_scope(engine) as session:
        delete_schedule(session, schedule_id=schedule.id, actor="carol")
    with session_scope(engine) as session:
        audit = list_schedule_audit(session, schedule_id=schedule.id)
    assert [(a.action, a.actor) for a in audit] == [
        ("created", "alice"),
        ("updated", "bob"),
        ("deleted", "carol"),
    ]
    assert audit[1].changes == {"interval_s": [3600, 7200], "ports": [[502], [502, 102]]}


def test_window_crossing_midnight_belongs_to_its_start_day() -> None:
    window = ScanWindow.model_validate({"days": [4], "start": "22:00", "end": "04:00"})
    friday_late = datetime(2026, 3, 13, 23, 0)
    saturday_early = datetime(2026, 3, 14, 3, 0)
    saturday_late = datetime(2026, 3, 14, 23, 0)
    assert window.contains(friday_late)
    assert window.contains(saturday_early)
    assert not window.contains(saturday_late)
