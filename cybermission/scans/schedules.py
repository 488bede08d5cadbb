"""Scan schedules in the store: cron or interval in the site's time zone, scan windows, blackouts.

The tables are the source of truth: ``Schedule.next_due_at`` is the next planned fire time, so
a restarted service (or another one taking over) picks up exactly where the last one stopped.
Every decision is a ``ScheduleRun`` row: started, waiting for a window, or skipped and why.
Every change to a schedule is a ``ScheduleAudit`` row: who, when, which fields from what to what.

Decisions, in order, at the moment a run is due (``now`` is always passed in, for tests):

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
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from pydantic import BaseModel, model_validator
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import JSON, Column, Engine, UniqueConstraint
from sqlmodel import Field, Session, SQLModel, col, delete, select

from cybermission.config import Settings
from cybermission.db import UTCDateTime, enum_type, new_id, session_scope, utcnow
from cybermission.errors import ConflictError, ScopeError, ValidationError
from cybermission.scans.models import ScanRun, Scope
from cybermission.scans.ownership import reap_orphaned_runs, this_process
from cybermission.scans.scopes import build_guard, guard_from_scopes
from cybermission.scans.service import create_scan_run
from cybermission.scans.targets import count_targets
from cybermission.sites.models import Site
from cybermission.visibility import get_owned_or_raise, visible

MIN_INTERVAL_S = 60
# Stop looking for an allowed moment after this many blackout/window hops (a year of blackouts).
MAX_HOPS = 64


class OutsideWindow(StrEnum):
    WAIT = "wait"  # run when the next window opens
    SKIP = "skip"  # record the skip, wait for the next planned time


class Misfire(StrEnum):
    RUN_ONCE = "run_once"  # one catch-up run for every time missed while down
    SKIP = "skip"


class RunOutcome(StrEnum):
    STARTED = "started"
    WAITING = "waiting"  # outside its window or in a blackout; starts at ``start_after``
    SKIPPED_WINDOW = "skipped_window"
    SKIPPED_BLACKOUT = "skipped_blackout"
    SKIPPED_OVERLAP = "skipped_overlap"
    SKIPPED_MISFIRE = "skipped_misfire"
    REFUSED = "refused"  # the scope guard refused the targets (scope expired, revoked, ...)


class RunTrigger(StrEnum):
    SCHEDULE = "schedule"
    MANUAL = "manual"


class ScanWindow(BaseModel):
    """Allowed local time on some weekdays (0 = Monday); ``end <= start`` crosses midnight."""

    days: list[int] = [0, 1, 2, 3, 4, 5, 6]
    start: time
    end: time

    @model_validator(mode="after")
    def _check(self) -> "ScanWindow":
        if not self.days or any(not 0 <= d <= 6 for d in self.days):
            raise ValueError("days: weekdays 0 (Monday) to 6 (Sunday), at least one")
        if self.start == self.end:
            raise ValueError("end: must differ from start")
        return self

    def contains(self, local: datetime) -> bool:
        now = local.time().replace(tzinfo=None)
        if self.start < self.end:
            return local.weekday() in self.days and self.start <= now < self.end
        # Crossing midnight: the evening part belongs to its day, the morning to the day before.
        return (local.weekday() in self.days and now >= self.start) or (
            (local.weekday() - 1) % 7 in self.days and now < self.end
        )

    def openings(self, day: date, tz: ZoneInfo) -> datetime | None:
        if day.weekday() not in self.days:
            return None
        return datetime.combine(day, self.start, tzinfo=tz)


class Blackout(BaseModel):
    """A period when the partner forbids scanning (a change freeze, a start-up); naive = local."""

    start: datetime
    end: datetime
    reason: str = ""

    @model_validator(mode="after")
    def _check(self) -> "Blackout":
        if (self.start.tzinfo is None) != (self.end.tzinfo is None):
            raise ValueError("end: give both times with an offset, or both without (site time)")
        if self.end <= self.start:
            raise ValueError("end: must be after start")
        return self

    def bounds(self, tz: ZoneInfo) -> tuple[datetime, datetime]:
        start = self.start if self.start.tzinfo else self.start.replace(tzinfo=tz)
        end = self.end if self.end.tzinfo else self.end.replace(tzinfo=tz)
        return start.astimezone(UTC), end.astimezone(UTC)


class ScheduleBase(SQLModel):
    # Unique per organisation: a clash never names another partner's schedules.
    name: str = Field(max_length=100, index=True)
    scope_id: str = Field(foreign_key="scope.id", index=True)
    # The site whose time zone the cron and the windows are in; defaults to the scope's site.
    site_id: str | None = Field(default=None, foreign_key="site.id", index=True)
    targets: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    ports: list[int] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    cron: str | None = Field(default=None, max_length=100)  # five fields: m h dom mon dow
    interval_s: int | None = None
    windows: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    blackouts: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    outside_window: OutsideWindow = Field(
        default=OutsideWindow.WAIT, sa_type=enum_type(OutsideWindow)
    )
    misfire: Misfire = Field(default=Misfire.RUN_ONCE, sa_type=enum_type(Misfire))
    misfire_grace_s: int = 300
    enabled: bool = True


class Schedule(ScheduleBase, table=True):
    __tablename__ = "schedule"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)

    id: str = Field(default_factory=new_id, primary_key=True)
    organization_id: str | None = Field(default=None, foreign_key="organization.id", index=True)
    next_due_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    created_by: str = Field(default="cli", max_length=100)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ScheduleRun(SQLModel, table=True):
    """One decision of the scheduler for one due time: what it did and why."""

    __tablename__ = "schedule_run"

    id: str = Field(default_factory=new_id, primary_key=True)
    schedule_id: str = Field(foreign_key="schedule.id", index=True)
    trigger: RunTrigger = Field(sa_type=enum_type(RunTrigger))
    due_at: datetime = Field(sa_type=UTCDateTime)
    decided_at: datetime = Field(sa_type=UTCDateTime)
    outcome: RunOutcome = Field(index=True, sa_type=enum_type(RunOutcome))
    start_after: datetime | None = Field(default=None, sa_type=UTCDateTime)
    scan_run_id: str | None = Field(default=None, foreign_key="scan_run.id", index=True)
    reason: str = Field(default="", max_length=500)
    actor: str = Field(default="scheduler", max_length=100)


class ScheduleAudit(SQLModel, table=True):
    """Who changed a schedule, when, and each field from what to what (kept after a delete)."""

    __tablename__ = "schedule_audit"

    id: str = Field(default_factory=new_id, primary_key=True)
    schedule_id: str = Field(max_length=36, index=True)
    action: str = Field(max_length=32)  # created, updated, deleted, run-now
    actor: str = Field(max_length=100)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    changes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


# -- validation -------------------------------------------------------------------------------


def _parse_list(model: type[BaseModel], items: list[dict[str, Any]], name: str) -> list[Any]:
    parsed = []
    for i, item in enumerate(items):
        try:
            parsed.append(model.model_validate(item))
        except PydanticValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ValidationError(f"{name}[{i}].{where}: {first['msg']}") from exc
    return parsed


def windows_of(schedule: ScheduleBase) -> list[ScanWindow]:
    return _parse_list(ScanWindow, schedule.windows, "windows")


def blackouts_of(schedule: ScheduleBase) -> list[Blackout]:
    return _parse_list(Blackout, schedule.blackouts, "blackouts")


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError(f"timezone: {name!r} is not an IANA time zone") from exc


def schedule_timezone(session: Session, schedule: ScheduleBase) -> ZoneInfo:
    """The site's zone (the schedule's site, else its scope's), else UTC."""
    site_id = schedule.site_id
    if site_id is None:
        scope = session.get(Scope, schedule.scope_id)
        site_id = scope.site_id if scope else None
    site = session.get(Site, site_id) if site_id else None
    return _zone(site.timezone if site else "UTC")


def _trigger(
    schedule: ScheduleBase, tz: ZoneInfo, anchor: datetime
) -> CronTrigger | IntervalTrigger:
    if (schedule.cron is None) == (schedule.interval_s is None):
        raise ValidationError("cron: give either cron or interval_s, not both, not neither")
    if schedule.cron is not None:
        try:
            return CronTrigger.from_crontab(schedule.cron, timezone=tz)
        except ValueError as exc:
            raise ValidationError(f"cron: {schedule.cron!r}: {exc}") from exc
    assert schedule.interval_s is not None
    if schedule.interval_s < MIN_INTERVAL_S:
        raise ValidationError(f"interval_s: at least {MIN_INTERVAL_S} seconds")
    return IntervalTrigger(seconds=schedule.interval_s, start_date=anchor, timezone=tz)


def next_fire_after(schedule: Schedule, tz: ZoneInfo, after: datetime) -> datetime | None:
    """The first planned time strictly after ``after`` (cron or interval, in the site's zone)."""
    trigger = _trigger(schedule, tz, schedule.created_at)
    # Triggers return a time >= now, ceiled to the second: a microsecond on makes it strictly after.
    fire: datetime | None = trigger.get_next_fire_time(None, after + timedelta(microseconds=1))
    return fire.astimezone(UTC) if fire else None


def _validate(session: Session, schedule: Schedule, settings: Settings) -> None:
    if not schedule.name.strip():
        raise ValidationError("name: give the schedule a name")
    scope = session.get(Scope, schedule.scope_id)
    if scope is None:
        raise ValidationError(f"scope_id: no scope with id {schedule.scope_id!r}")
    if schedule.site_id is not None and session.get(Site, schedule.site_id) is None:
        raise ValidationError(f"site_id: no site with id {schedule.site_id!r}")
    if not schedule.targets:
        schedule.targets = list(scope.cidrs)
    # The targets must lie in this schedule's own scope, not just in any scope.
    count_targets(schedule.targets, guard=guard_from_scopes([scope], settings))
    if schedule.misfire_grace_s < 0:
        raise ValidationError("misfire_grace_s: 0 or more seconds")
    windows_of(schedule)
    blackouts_of(schedule)
    _trigger(schedule, schedule_timezone(session, schedule), schedule.created_at)
    site_id = schedule.site_id or scope.site_id
    site = session.get(Site, site_id) if site_id else None
    schedule.organization_id = site.organization_id if site else None


def _snapshot(schedule: Schedule) -> dict[str, Any]:
    return schedule.model_dump(mode="json", include=set(ScheduleBase.model_fields), exclude={"id"})


def _audit(
    session: Session,
    schedule_id: str,
    action: str,
    actor: str,
    changes: dict[str, Any],
    now: datetime,
) -> None:
    session.add(
        ScheduleAudit(
            schedule_id=schedule_id, action=action, actor=actor[:100], at=now, changes=changes
        )
    )


# -- the store --------------------------------------------------------------------------------


def create_schedule(
    session: Session,
    *,
    data: ScheduleBase,
    settings: Settings,
    actor: str,
    now: datetime | None = None,
) -> Schedule:
    """Validate and store a schedule, plan its first run, audit the creation."""
    now = now or utcnow()
    schedule = Schedule.model_validate(data, update={"created_by": actor[:100]})
    schedule.created_at = schedule.updated_at = now
    _validate(session, schedule, settings)
    _check_name(session, schedule)
    schedule.next_due_at = next_fire_after(schedule, schedule_timezone(session, schedule), now)
    session.add(schedule)
    session.flush()
    _audit(
        session,
        schedule.id,
        "created",
        actor,
        {k: [None, v] for k, v in _snapshot(schedule).items()},
        now,
    )
    return schedule


def _check_name(session: Session, schedule: Schedule) -> None:
    """The name is new in the schedule's organisation (or among global schedules)."""
    same_owner = (
        Schedule.organization_id == schedule.organization_id
        if schedule.organization_id is not None
        else col(Schedule.organization_id).is_(None)
    )
    query = select(Schedule).where(
        Schedule.name == schedule.name, same_owner, Schedule.id != schedule.id
    )
    if session.exec(query).first() is not None:
        raise ConflictError(f"name: a schedule named {schedule.name!r} already exists")


def update_schedule(
    session: Session,
    *,
    schedule_id: str,
    changes: dict[str, Any],
    settings: Settings,
    actor: str,
    now: datetime | None = None,
) -> Schedule:
    """Apply ``changes`` (fields of ScheduleBase), re-plan the next run, audit old -> new."""
    now = now or utcnow()
    schedule = get_schedule_or_raise(session, schedule_id, visible_to=None)
    unknown = set(changes) - set(ScheduleBase.model_fields)
    if unknown:
        raise ValidationError(f"{sorted(unknown)[0]}: not a schedule field")
    before = _snapshot(schedule)
    for key, value in changes.items():
        setattr(schedule, key, value)
    _validate(session, schedule, settings)
    _check_name(session, schedule)
    after = _snapshot(schedule)
    diff = {k: [before[k], after[k]] for k in after if before.get(k) != after[k]}
    if not diff:
        return schedule
    timing = {"cron", "interval_s", "site_id", "scope_id", "enabled"}
    if timing & set(diff):
        schedule.next_due_at = next_fire_after(schedule, schedule_timezone(session, schedule), now)
    schedule.updated_at = now
    session.add(schedule)
    _audit(session, schedule.id, "updated", actor, diff, now)
    return schedule


def delete_schedule(
    session: Session, *, schedule_id: str, actor: str, now: datetime | None = None
) -> None:
    """Remove a schedule and its decisions; the audit keeps what it was and who removed it."""
    now = now or utcnow()
    schedule = get_schedule_or_raise(session, schedule_id, visible_to=None)
    _audit(
        session,
        schedule.id,
        "deleted",
        actor,
        {k: [v, None] for k, v in _snapshot(schedule).items()},
        now,
    )
    session.exec(delete(ScheduleRun).where(col(ScheduleRun.schedule_id) == schedule.id))
    session.delete(schedule)


def get_schedule_or_raise(
    session: Session, schedule_id: str, *, visible_to: str | None
) -> Schedule:
    return get_owned_or_raise(
        session, Schedule, schedule_id, visible_to=visible_to, what="schedule"
    )


def list_schedules(session: Session, *, visible_to: str | None) -> list[Schedule]:
    """The schedules ``visible_to`` sees, by name."""
    query = select(Schedule).order_by(col(Schedule.name))
    query = query.where(visible(col(Schedule.organization_id), visible_to))
    return list(session.exec(query).all())


def list_schedule_runs(
    session: Session, *, schedule_id: str, limit: int = 100
) -> list[ScheduleRun]:
    query = (
        select(ScheduleRun)
        .where(ScheduleRun.schedule_id == schedule_id)
        .order_by(col(ScheduleRun.decided_at).desc(), col(ScheduleRun.id))
        .limit(limit)
    )
    return list(session.exec(query).all())


def list_schedule_audit(
    session: Session, *, schedule_id: str, limit: int = 100
) -> list[ScheduleAudit]:
    query = (
        select(ScheduleAudit)
        .where(ScheduleAudit.schedule_id == schedule_id)
        .order_by(col(ScheduleAudit.at), col(ScheduleAudit.id))
        .limit(limit)
    )
    return list(session.exec(query).all())


# -- deciding ---------------------------------------------------------------------------------


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


def _window_end(window: ScanWindow, local: datetime) -> datetime:
    """The end of ``window``'s occurrence that contains ``local``."""
    day = local.date()
    if window.end <= window.start and local.time().replace(tzinfo=None) >= window.start:
        day += timedelta(days=1)  # the evening part of a window crossing midnight
    return datetime.combine(day, window.end, tzinfo=local.tzinfo)


def allowed_until(
    schedule: Schedule, tz: ZoneInfo, moment: datetime, *, honour_window: bool = True
) -> datetime | None:
    """When scanning that may start at ``moment`` must stop: the close of the window it is in
    (adjacent windows joined) or the start of the next blackout; None if nothing bounds it."""
    ends: list[datetime] = []
    windows = windows_of(schedule)
    if honour_window and windows and in_window(windows, tz, moment):
        end = moment
        for _ in range(MAX_HOPS):
            local = end.astimezone(tz)
            containing = [w for w in windows if w.contains(local)]
            if not containing:
                break
            end = max(_window_end(w, local) for w in containing).astimezone(UTC)
        ends.append(end)
    starts = [start for start, _ in (b.bounds(tz) for b in blackouts_of(schedule))]
    ends.extend(start for start in starts if start > moment)
    return min(ends, default=None)


def in_blackout(blackouts: list[Blackout], tz: ZoneInfo, moment: datetime) -> Blackout | None:
    for blackout in blackouts:
        start, end = blackout.bounds(tz)
        if start <= moment < end:
            return blackout
    return None


def in_window(windows: list[ScanWindow], tz: ZoneInfo, moment: datetime) -> bool:
    if not windows:
        return True
    local = moment.astimezone(tz)
    return any(w.contains(local) for w in windows)


def next_window_opening(
    windows: list[ScanWindow], tz: ZoneInfo, after: datetime
) -> datetime | None:
    local = after.astimezone(tz)
    openings = [
        opening.astimezone(UTC)
        for offset in range(8)
        for w in windows
        if (opening := w.openings(local.date() + timedelta(days=offset), tz)) is not None
        and opening.astimezone(UTC) > after
    ]
    return min(openings, default=None)


def next_allowed(schedule: Schedule, tz: ZoneInfo, moment: datetime) -> datetime | None:
    """The first moment at or after ``moment`` inside a window and outside every blackout."""
    windows, blackouts = windows_of(schedule), blackouts_of(schedule)
    for _ in range(MAX_HOPS):
        blackout = in_blackout(blackouts, tz, moment)
        if blackout is not None:
            moment = blackout.bounds(tz)[1]
            continue
        if not in_window(windows, tz, moment):
            opening = next_window_opening(windows, tz, moment)
            if opening is None:
                return None
            moment = opening
            continue
        return moment
    return None


def _describe_windows(schedule: Schedule, tz: ZoneInfo) -> str:
    parts = [
        f"days {','.join(map(str, w.days))} {w.start:%H:%M}-{w.end:%H:%M}"
        for w in windows_of(schedule)
    ]
    return f"{'; '.join(parts)} ({tz.key})"


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


def _decide(
    session: Session,
    schedule: Schedule,
    run: ScheduleRun,
    *,
    now: datetime,
    tz: ZoneInfo,
    settings: Settings,
    launched: list[str],
    honour_window: bool = True,
    plan_site: SitePlanner | None = None,
) -> None:
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
            why = f"outside its scan window {_describe_windows(schedule, tz)}"
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
        settings,
        launched,
        plan_site=plan_site,
        not_after=allowed_until(schedule, tz, now, honour_window=honour_window),
    )


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
    # Runs parked for a window whose moment has come.
    for waiting in session.exec(
        select(ScheduleRun)
        .where(ScheduleRun.schedule_id == schedule.id)
        .where(ScheduleRun.outcome == RunOutcome.WAITING)
        .where(col(ScheduleRun.start_after) <= now)
    ).all():
        _decide(
            session,
            schedule,
            waiting,
            now=now,
            tz=tz,
            settings=settings,
            launched=report.launched,
            plan_site=plan_site,
        )
        waiting.decided_at = now
        session.add(waiting)
        report.decisions.append((schedule.id, waiting.outcome))
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
        _decide(
            session,
            schedule,
            run,
            now=now,
            tz=tz,
            settings=settings,
            launched=report.launched,
            plan_site=plan_site,
        )
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
    with session_scope(engine) as session:
        ids = list(session.exec(select(Schedule.id).where(col(Schedule.enabled))).all())
    for schedule_id in ids:
        if still_leader is not None and not still_leader():
            break
        launched_before = len(report.launched)
        try:
            with session_scope(engine) as session:
                schedule = session.get(Schedule, schedule_id)
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
    _decide(
        session,
        schedule,
        run,
        now=now,
        tz=tz,
        settings=settings,
        launched=launched,
        honour_window=False,
        plan_site=plan_site,
    )
    session.add(run)
    session.flush()
    _audit(session, schedule.id, "run-now", actor, {"outcome": [None, str(run.outcome)]}, now)
    return run, (launched[0] if launched else None)
