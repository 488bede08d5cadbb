"""Ticks: what the scheduler decides for every due schedule and waiting run.

Decisions, in order, at the moment a run is due (``now`` is always passed in, for tests):

0. **resume**: the schedule's latest run ended ``interrupted`` (its service stopped or died): it is
   resumed where it stopped, once inside its window, up to ``runs.scheduled_resumes`` times;
1. **misfire**: due more than ``misfire_grace_s`` ago (the service was down): ``run_once`` runs
   one catch-up run for all missed times, ``skip`` records the miss and waits for the next time;
2. **overlap**: a run of this schedule still going (or waiting for its window) absorbs this one,
   which is recorded as skipped; a run whose owner died is closed first (``interrupted``, by the
   reaping every tick starts with), so a dead run never blocks its schedule;
3. **blackout** then **window**: outside, ``wait`` parks the run until the next allowed moment,
   ``skip`` records it as skipped;
4. the scan run is created (targets judged by the scope guard, as for any scan) and started.

A scope that belongs to a site scanned by its own sensor (the distributed mode, SCALE-OUT.md) is
handed to a :class:`SitePlanner` instead: it writes the run and its chunks, bounded by the end of
the current window or the next blackout, and the central relay dispatches them; nothing is
launched here. The planner is injected (the scans domain never imports the sensors package).
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from cybermission.config import Settings
from cybermission.db import session_scope, utcnow
from cybermission.errors import ConflictError, ScopeError, ValidationError
from cybermission.findings.service import expire_acceptances
from cybermission.scans.models import ScanRun, ScanStatus, Scope
from cybermission.scans.ownership import reap_orphaned_runs, this_process
from cybermission.scans.placed_findings import finding_places
from cybermission.scans.resume import reopen
from cybermission.scans.schedules.models import (
    Misfire,
    OutsideWindow,
    RunOutcome,
    RunTrigger,
    Schedule,
    ScheduleRun,
)
from cybermission.scans.schedules.service import get_schedule_or_raise, record_audit
from cybermission.scans.schedules.timing import (
    allowed_until,
    blackouts_of,
    describe_windows,
    in_blackout,
    in_window,
    next_allowed,
    next_fire_after,
    schedule_timezone,
    windows_of,
)
from cybermission.scans.scopes import build_guard
from cybermission.scans.service import create_scan_run
from cybermission.store_links import store_deadline


class SitePlanner(Protocol):
    """Writes a site's distributed scan in the caller's transaction, or returns None when the
    site has no sensor to run it (the embedded pipeline runs it then)."""

    def __call__(
        self,
        session: Session,
        settings: Settings,
        *,
        site_id: str,
        targets: list[str],
        ports: list[int] | None,
        not_after: datetime | None,
        requested_by: str,
    ) -> ScanRun | None: ...


def _running(session: Session, schedule_id: str) -> ScheduleRun | None:
    """A run of this schedule that is still going or still waiting for its window."""
    waiting = session.exec(
        select(ScheduleRun)
        .where(ScheduleRun.schedule_id == schedule_id)
        .where(ScheduleRun.outcome == RunOutcome.WAITING)
    ).first()
    if waiting is not None:
        return waiting
    return session.exec(
        select(ScheduleRun)
        .join(ScanRun, col(ScanRun.id) == col(ScheduleRun.scan_run_id))
        .where(ScheduleRun.schedule_id == schedule_id)
        .where(ScheduleRun.outcome == RunOutcome.STARTED)
        .where(col(ScanRun.finished_at).is_(None))
    ).first()


def _start_on_site(
    session: Session,
    schedule: Schedule,
    run: ScheduleRun,
    settings: Settings,
    plan_site: SitePlanner,
    not_after: datetime | None,
) -> bool:
    """Hand the run to the scope's site sensor; False if the scope's site has none."""
    scope = session.get(Scope, schedule.scope_id)
    if scope is None or scope.site_id is None:
        return False
    try:
        scan = plan_site(
            session,
            settings,
            site_id=scope.site_id,
            targets=list(schedule.targets),
            ports=schedule.ports,
            not_after=not_after,
            requested_by=f"schedule:{schedule.name}"[:100],
        )
    except ScopeError as exc:
        run.outcome = RunOutcome.REFUSED
        run.reason = f"scope guard refused the targets: {exc}"[:500]
        return True
    if scan is None:
        return False
    run.outcome = RunOutcome.STARTED
    run.scan_run_id = scan.id
    run.start_after = None
    run.reason = f"dispatched to the sensor of site {scope.site_id}"[:500]
    return True


def _start(
    session: Session,
    schedule: Schedule,
    run: ScheduleRun,
    settings: Settings,
    launched: list[str],
    *,
    plan_site: SitePlanner | None = None,
    not_after: datetime | None = None,
) -> None:
    if plan_site is not None and _start_on_site(
        session, schedule, run, settings, plan_site, not_after
    ):
        return  # a distributed run (or refused): the relay dispatches it, nothing to launch
    try:
        scan = create_scan_run(
            session,
            # The schedule's organisation's scopes only: its run stays in that space.
            guard=build_guard(session, settings, organization_id=schedule.organization_id),
            targets=list(schedule.targets),
            ports=schedule.ports,
            settings=settings,
            requested_by=f"schedule:{schedule.name}"[:100],
            # Owned from birth: if this process dies before it launches the run, the reaper
            # closes it and the schedule is not blocked.
            owner=this_process(),
        )
    except ScopeError as exc:
        run.outcome = RunOutcome.REFUSED
        run.reason = f"scope guard refused the targets: {exc}"[:500]
        return
    scan.organization_id = schedule.organization_id
    if schedule.site_id is not None:
        scan.site_id = schedule.site_id
    else:  # the scope's site, as for the time zone: its assets and findings carry that site
        scope = session.get(Scope, schedule.scope_id)
        scan.site_id = scope.site_id if scope is not None else None
    run.outcome = RunOutcome.STARTED
    run.scan_run_id = scan.id
    run.start_after = None
    launched.append(scan.id)


@dataclass(frozen=True, slots=True)
class _Deciding:
    """What deciding a run of one schedule needs besides the run: the same for every run the
    schedule has at this moment (its due run, the runs waiting for its window, run now)."""

    session: Session
    schedule: Schedule
    now: datetime
    tz: ZoneInfo  # the schedule's site's time zone
    settings: Settings
    launched: list[str]
    plan_site: SitePlanner | None
    # False for an operator's "run now": the window is waived (blackouts and overlap are not).
    honour_window: bool = True


def _decide(deciding: _Deciding, run: ScheduleRun) -> None:
    session, schedule, now = deciding.session, deciding.schedule, deciding.now
    tz, honour_window = deciding.tz, deciding.honour_window
    # Overlap first: a run still going, or already waiting for the window, absorbs this one.
    other = _running(session, schedule.id)
    if other is not None and other.id != run.id:
        run.outcome = RunOutcome.SKIPPED_OVERLAP
        state = "waiting for its window" if other.outcome is RunOutcome.WAITING else "running"
        run.reason = f"skipped: run {other.id} of this schedule is still {state}"[:500]
        return
    blackout = in_blackout(blackouts_of(schedule), tz, now)
    outside = honour_window and not in_window(windows_of(schedule), tz, now)
    if blackout is not None or outside:
        if blackout is not None:
            label = f" ({blackout.reason})" if blackout.reason else ""
            why = f"in blackout{label} until {blackout.bounds(tz)[1].isoformat()}"
        else:
            why = f"outside its scan window {describe_windows(schedule, tz)}"
        if schedule.outside_window is OutsideWindow.SKIP or not honour_window:
            run.outcome = RunOutcome.SKIPPED_BLACKOUT if blackout else RunOutcome.SKIPPED_WINDOW
            run.reason = f"skipped: {why}"[:500]
            return
        start_after = next_allowed(schedule, tz, now) if honour_window else None
        if start_after is None:
            run.outcome = RunOutcome.SKIPPED_WINDOW
            run.reason = f"skipped: {why}; no allowed moment ahead"[:500]
            return
        run.outcome = RunOutcome.WAITING
        run.start_after = start_after
        run.reason = f"waiting: {why}; starts at {start_after.isoformat()}"[:500]
        return
    _start(
        session,
        schedule,
        run,
        deciding.settings,
        deciding.launched,
        plan_site=deciding.plan_site,
        not_after=allowed_until(schedule, tz, now, honour_window=honour_window),
    )


def _last_interrupted(session: Session, schedule_id: str) -> ScanRun | None:
    """The schedule's latest scan run, when it ended ``interrupted``."""
    latest = session.exec(
        select(ScheduleRun)
        .where(ScheduleRun.schedule_id == schedule_id)
        .where(ScheduleRun.outcome == RunOutcome.STARTED)
        .where(col(ScheduleRun.scan_run_id).is_not(None))
        .order_by(col(ScheduleRun.decided_at).desc(), col(ScheduleRun.id).desc())
    ).first()
    if latest is None or latest.scan_run_id is None:
        return None
    scan = session.get(ScanRun, latest.scan_run_id)
    return scan if scan is not None and scan.status is ScanStatus.INTERRUPTED else None


def _resume_interrupted(
    session: Session,
    schedule: Schedule,
    *,
    now: datetime,
    tz: ZoneInfo,
    settings: Settings,
    report: "TickReport",
) -> None:
    """Resume the schedule's latest run where it stopped if it was interrupted (its service was
    stopped or died), inside its window and out of blackouts, at most ``runs.scheduled_resumes``
    times; otherwise the schedule's next run starts over."""
    scan = _last_interrupted(session, schedule.id)
    if scan is None or scan.resumes >= settings.runs.scheduled_resumes:
        return
    if in_blackout(blackouts_of(schedule), tz, now) is not None:
        return
    if not in_window(windows_of(schedule), tz, now) or _running(session, schedule.id) is not None:
        return
    was = scan.reason or "interrupted"
    try:
        reopen(session, scan, by=f"schedule:{schedule.name}", owner=this_process())
    except ConflictError:
        return  # resumed by someone else meanwhile
    session.add(
        ScheduleRun(
            schedule_id=schedule.id,
            trigger=RunTrigger.RESUME,
            due_at=now,
            decided_at=now,
            outcome=RunOutcome.STARTED,
            scan_run_id=scan.id,
            reason=f"resumed where it stopped ({was})"[:500],
        )
    )
    report.launched.append(scan.id)
    report.decisions.append((schedule.id, RunOutcome.STARTED))


@dataclass
class TickReport:
    """What one tick did: the scan runs to launch, and each decision as (schedule, outcome)."""

    launched: list[str] = field(default_factory=list)
    decisions: list[tuple[str, RunOutcome]] = field(default_factory=list)


def _tick_schedule(
    session: Session,
    schedule: Schedule,
    *,
    now: datetime,
    settings: Settings,
    report: TickReport,
    plan_site: SitePlanner | None,
) -> None:
    tz = schedule_timezone(session, schedule)
    deciding = _Deciding(session, schedule, now, tz, settings, report.launched, plan_site)
    # Runs parked for a window whose moment has come.
    for waiting in session.exec(
        select(ScheduleRun)
        .where(ScheduleRun.schedule_id == schedule.id)
        .where(ScheduleRun.outcome == RunOutcome.WAITING)
        .where(col(ScheduleRun.start_after) <= now)
    ).all():
        _decide(deciding, waiting)
        waiting.decided_at = now
        session.add(waiting)
        report.decisions.append((schedule.id, waiting.outcome))
    _resume_interrupted(session, schedule, now=now, tz=tz, settings=settings, report=report)
    due = schedule.next_due_at
    if due is None or due > now:
        return
    run = ScheduleRun(
        schedule_id=schedule.id,
        trigger=RunTrigger.SCHEDULE,
        due_at=due,
        decided_at=now,
        outcome=RunOutcome.SKIPPED_MISFIRE,
    )
    late_s = (now - due).total_seconds()
    if late_s > schedule.misfire_grace_s and schedule.misfire is Misfire.SKIP:
        run.reason = f"skipped: missed by {int(late_s)} s (the scheduler was not running)"
    else:
        _decide(deciding, run)
        if late_s > schedule.misfire_grace_s:
            run.reason = f"catch-up of a run missed by {int(late_s)} s; {run.reason}".rstrip("; ")[
                :500
            ]
    session.add(run)
    report.decisions.append((schedule.id, run.outcome))
    # Every time missed while down collapses into this one decision.
    schedule.next_due_at = next_fire_after(schedule, tz, now)
    session.add(schedule)


def tick(
    engine: Engine,
    *,
    settings: Settings,
    now: datetime,
    plan_site: SitePlanner | None = None,
    still_leader: Callable[[], bool] | None = None,
) -> TickReport:
    """Decide every due schedule and waiting run at ``now``; one transaction per schedule.

    With ``plan_site``, a schedule whose scope belongs to a site with a sensor runs there.
    ``still_leader`` is asked before each schedule: a process that lost the scheduler lock
    mid-tick decides nothing more (another may hold it now).
    """
    report = TickReport()
    # Runs whose owner died would otherwise absorb their schedule's next run as an overlap.
    reap_orphaned_runs(engine, lease_s=settings.runs.lease_s)
    # Each unit under the stall deadline (store_links), as the reaping: a store gone silent fails
    # the tick with a lost connection (logged; the next tick tries again), never hangs the
    # scheduler's one tick thread.
    # A risk acceptance lapses on its date (reopened, with its event and alerts), not at the next
    # scan of its device.
    with store_deadline(engine, "expire risk acceptances"), session_scope(engine) as session:
        expire_acceptances(session, now=now, place_of=finding_places(session=session))
    with store_deadline(engine, "list the schedules"), session_scope(engine) as session:
        ids = list(session.exec(select(Schedule.id).where(col(Schedule.enabled))).all())
    for schedule_id in ids:
        if still_leader is not None and not still_leader():
            break
        launched_before = len(report.launched)
        try:
            with (
                store_deadline(engine, "decide a schedule"),
                session_scope(engine) as session,
            ):
                # Locked until this decision commits: a process that lost the scheduler lock
                # mid-decision and its successor never both decide one due time (the second
                # reads the schedule once the first committed, no longer due).
                schedule = session.get(Schedule, schedule_id, with_for_update=True)
                if schedule is None or not schedule.enabled:
                    continue
                _tick_schedule(
                    session,
                    schedule,
                    now=now,
                    settings=settings,
                    report=report,
                    plan_site=plan_site,
                )
        except ValidationError:
            # A schedule that no longer validates (its site's zone removed, ...) must not stop
            # the others; its runs are not launched (the transaction rolled back).
            del report.launched[launched_before:]
            continue
    return report


def run_schedule_now(
    session: Session,
    *,
    schedule_id: str,
    settings: Settings,
    actor: str,
    now: datetime | None = None,
    plan_site: SitePlanner | None = None,
) -> tuple[ScheduleRun, str | None]:
    """Run a schedule now (an operator's decision: the window is waived, blackouts and overlap
    are not). Returns the decision and the scan run to launch, if one was started."""
    now = now or utcnow()
    schedule = get_schedule_or_raise(session, schedule_id, visible_to=None)
    tz = schedule_timezone(session, schedule)
    run = ScheduleRun(
        schedule_id=schedule.id,
        trigger=RunTrigger.MANUAL,
        due_at=now,
        decided_at=now,
        outcome=RunOutcome.SKIPPED_OVERLAP,
        actor=actor[:100],
    )
    launched: list[str] = []
    _decide(_Deciding(session, schedule, now, tz, settings, launched, plan_site, False), run)
    session.add(run)
    session.flush()
    record_audit(session, schedule.id, "run-now", actor, {"outcome": [None, str(run.outcome)]}, now)
    return run, (launched[0] if launched else None)
